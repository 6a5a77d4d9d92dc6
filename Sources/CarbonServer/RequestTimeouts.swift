import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// Disconnects clients that send a request too slowly, so that a trickling client cannot pin a
/// connection: the head of a request must arrive within `header` of its first byte, and its body
/// within `body` of its head; a client that leaves an answer unread for `send` is disconnected. A
/// connection with nothing to send is left to the idle timeout.
///
/// Two handlers share the clock: `ByteWatch`, first in the pipeline, sees raw bytes and starts the
/// head's clock at the first byte of a request; `RequestTimeoutHandler`, after the HTTP decoder,
/// sees the head and the end of each request.
///
/// It also keeps the promise of a response that says `Connection: close` (a 413, a 503 while
/// draining), whatever the request said: once that response is written it closes the output, so
/// the client sees the end of the stream, drops whatever the client still sends (the rest of a
/// body too large, a next request), and closes the connection when the client does, or after
/// `header` at the latest. It does not close at once: a connection closed with unread input is
/// reset, and a reset can destroy the response before the client has read it.
final class RequestTimeoutHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let header: TimeAmount
    let body: TimeAmount
    /// How long the client may leave an answer unread (the connection not writable) before it is
    /// disconnected.
    let send: TimeAmount
    var sendTimer: Scheduled<Void>?
    /// True between requests: the next byte starts the next head's clock.
    var awaitingHead = true
    var timer: Scheduled<Void>?
    /// A response with `Connection: close` has begun: nothing more is read.
    var closing = false

    init(header: TimeAmount, body: TimeAmount, send: TimeAmount) {
        self.header = header
        self.body = body
        self.send = send
    }

    /// A client that stops reading its answers makes the connection unwritable: answers would
    /// pile up in memory. If it stays so for `send`, the connection is closed.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        sendTimer?.cancel()
        sendTimer = nil
        if !context.channel.isWritable {
            let channel = context.channel
            sendTimer = context.eventLoop.scheduleTask(in: send) { channel.close(mode: .all, promise: nil) }
        }
        context.fireChannelWritabilityChanged()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let watch = ByteWatch(owner: self)
        try? context.pipeline.syncOperations.addHandler(watch, position: .first)
        // The one place where the server's own handlers are added to each connection's pipeline.
        ConnectionPersistence.install(in: context.pipeline.syncOperations)
    }

    func handlerRemoved(context: ChannelHandlerContext) { cancelAll() }

    func channelInactive(context: ChannelHandlerContext) {
        cancelAll()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if closing { return }
        switch unwrapInboundIn(data) {
        case .head:
            awaitingHead = false
            arm(body, context: context)
        case .end:
            awaitingHead = true
            cancel()
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func bytesArrived(context: ChannelHandlerContext) {
        if awaitingHead, timer == nil, !closing { arm(header, context: context) }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head) where head.headerFields[.connection]?.lowercased() == "close":
            closing = true
            context.write(data, promise: promise)
        case .end where closing:
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.cascade(to: promise)
            context.write(data, promise: written)
            written.futureResult.assumeIsolated().whenComplete { _ in
                context.close(mode: .output, promise: nil)
                self.arm(self.header, context: context)
            }
        default:
            context.write(data, promise: promise)
        }
    }

    func arm(_ amount: TimeAmount, context: ChannelHandlerContext) {
        timer?.cancel()
        let channel = context.channel
        timer = context.eventLoop.scheduleTask(in: amount) { channel.close(promise: nil) }
    }

    func cancel() {
        timer?.cancel()
        timer = nil
    }

    func cancelAll() {
        cancel()
        sendTimer?.cancel()
        sendTimer = nil
    }

    /// Sees the raw bytes, before the HTTP decoder.
    final class ByteWatch: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = ByteBuffer
        typealias InboundOut = ByteBuffer
        weak var owner: RequestTimeoutHandler?

        init(owner: RequestTimeoutHandler) { self.owner = owner }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            owner?.bytesArrived(context: context)
            context.fireChannelRead(data)
        }
    }
}
