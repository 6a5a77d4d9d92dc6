import CarbonStore
import HTTPTypes
import Hummingbird
import NIOCore

/// JSON answers, written in the one JSON form of the model (`RecordJSON`: byte-exact keys).
enum JSONBody {
    static func response(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        let text: String
        do {
            text = try RecordJSON.encode(value, pretty: false)
        } catch {
            // Only a value the model cannot write (never expected): say so rather than send nothing.
            text =
                "{\"error\":{\"code\":\"internal_error\",\"message\":\"the answer could not be written as JSON\",\"requestId\":\"\"}}"
            return Response(
                status: .internalServerError, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        return Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}
