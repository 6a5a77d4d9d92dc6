import CarbonStore
import HTTPTypes
import Hummingbird
import NIOCore

/// JSON answers, written in the one JSON form of the model (`RecordJSON`: byte-exact keys).
enum JSONBody {
    /// What is sent when a value cannot be written as JSON (never expected: the model writes every
    /// value it holds).
    static let unwritable =
        "{\"error\":{\"code\":\"internal_error\",\"message\":\"the answer could not be written as JSON\",\"requestId\":\"\"}}"

    /// The value as JSON, or nil if it cannot be written.
    static func text(_ value: some Encodable) -> String? { try? RecordJSON.encode(value, pretty: false) }

    static func buffer(_ value: some Encodable) -> ByteBuffer {
        ByteBuffer(string: text(value) ?? unwritable)
    }

    /// Throws `AnswerTooLargeError` for a value whose text would be over `RecordJSON.maximumTextBytes`
    /// (answered as an error: 500 `answer_too_large`).
    static func response(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        let text: String
        do {
            text = try RecordJSON.encode(value, pretty: false)
        } catch let error as AnswerTooLargeError {
            throw error
        } catch {
            return Response(
                status: .internalServerError, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: unwritable)))
        }
        return Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}
