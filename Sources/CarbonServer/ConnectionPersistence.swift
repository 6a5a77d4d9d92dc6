import NIOCore
import NIOHTTP1
import NIOHTTPTypesHTTP1

/// Ends a connection after the answer to a request that does not ask to keep it (RFC 9112 §9.3):
/// an HTTP/1.0 request without `Connection: keep-alive`, or any request with `Connection: close`.
///
/// The HTTP types that the application sees carry no protocol version, so without this an HTTP/1.0
/// connection stayed open after its answer and the decoder refused the next request on it. This
/// handler sits between NIO's HTTP/1 decoder and the conversion to those types, where the version
/// is still known: it gives such a request the header `Connection: close`, which makes the server
/// stop reading after answering it and close its side, and it says `Connection: close` in the
/// answer.
final class ConnectionPersistence: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// For each request read and not yet answered, oldest first (a client may send the next before
    /// the answer to the last): whether it ends the connection, which its answer then says.
    var ends: [Bool] = []

    /// Puts a handler before the conversion to HTTP types in `pipeline` (nothing if there is none).
    static func install(in pipeline: ChannelPipeline.SynchronousOperations) {
        guard let conversion = try? pipeline.handler(type: HTTP1ToHTTPServerCodec.self) else { return }
        try? pipeline.addHandler(ConnectionPersistence(), position: .before(conversion))
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(var head) = unwrapInboundIn(data) else {
            context.fireChannelRead(data)
            return
        }
        ends.append(!head.isKeepAlive)
        guard !head.isKeepAlive else {
            context.fireChannelRead(data)
            return
        }
        head.headers.replaceOrAdd(name: "connection", value: "close")
        context.fireChannelRead(wrapInboundOut(.head(head)))
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        // An answer without a request (a parser error's) ends the connection on its own.
        guard case .head(var head) = unwrapOutboundIn(data), !ends.isEmpty, ends.removeFirst() else {
            context.write(data, promise: promise)
            return
        }
        head.headers.replaceOrAdd(name: "connection", value: "close")
        context.write(wrapOutboundOut(.head(head)), promise: promise)
    }
}
