import HTTPTypes
import Logging
import NIOCore
import NIOHTTPTypes

/// Gives the error answers that the HTTP framework writes itself, before there is a request for the
/// routes (a malformed request line or header, oversized headers, both `Content-Length` and
/// `Transfer-Encoding`), the service's JSON error body and an `X-Request-Id`, and logs and counts
/// them like every other answer. It recognises them as error answers without a request id: every
/// answer of the routes has one.
final class ParserErrorAnswer: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let metrics: ServerMetrics
    let logger: Logger
    /// The body to write before the end of the answer being rewritten.
    var pendingBody: ByteBuffer?

    init(metrics: ServerMetrics, logger: Logger) {
        self.metrics = metrics
        self.logger = logger
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head) where head.status.code >= 400 && head.headerFields[.xRequestID] == nil:
            let requestID = FrontMiddleware.newID()
            let error = APIError(
                head.status, code: head.status.code < 500 ? "invalid_request" : "internal_error",
                head.status.code < 500
                    ? "the request is not valid HTTP/1.1 (a malformed request line or header, headers over the size limit, or both Content-Length and Transfer-Encoding); the connection is closed"
                    : "the HTTP server failed; the connection is closed")
            let buffer = JSONBody.buffer(FrontMiddleware.errorBody(for: error, requestID: requestID))
            head.headerFields[.contentType] = "application/json"
            head.headerFields[.contentLength] = String(buffer.readableBytes)
            head.headerFields[.xRequestID] = requestID
            pendingBody = buffer
            metrics.request(method: "unparsed", route: "unparsed", status: head.status.code, duration: .zero)
            logger.info(
                "request",
                metadata: [
                    "requestId": .string(requestID), "route": .string("unparsed"),
                    "status": .stringConvertible(head.status.code), "code": .string(error.code),
                ])
            context.write(wrapOutboundOut(.head(head)), promise: promise)
        case .end:
            if let body = pendingBody {
                pendingBody = nil
                context.write(wrapOutboundOut(.body(body)), promise: nil)
            }
            context.write(data, promise: promise)
        default:
            context.write(data, promise: promise)
        }
    }
}
