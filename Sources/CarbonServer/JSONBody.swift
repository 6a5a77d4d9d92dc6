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

    static func response(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        guard let text = text(value) else {
            return Response(
                status: .internalServerError, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: unwritable)))
        }
        return Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}
