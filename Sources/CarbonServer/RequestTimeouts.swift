import NIOCore
import NIOHTTPTypes

/// Disconnects clients that send a request too slowly, so that a trickling client cannot pin a
/// connection: the head of a request must arrive within `header` of its first byte, and its body
/// within `body` of its head. A connection with nothing to send is left to the idle timeout.
///
/// Two handlers share the clock: `ByteWatch`, first in the pipeline, sees raw bytes and starts the
/// head's clock at the first byte of a request; `RequestTimeoutHandler`, after the HTTP decoder,
/// sees the head and the end of each request.
final class RequestTimeoutHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    let header: TimeAmount
    let body: TimeAmount
    /// True between requests: the next byte starts the next head's clock.
    var awaitingHead = true
    var timer: Scheduled<Void>?

    init(header: TimeAmount, body: TimeAmount) {
        self.header = header
        self.body = body
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let watch = ByteWatch(owner: self)
        try? context.pipeline.syncOperations.addHandler(watch, position: .first)
    }

    func handlerRemoved(context: ChannelHandlerContext) { cancel() }

    func channelInactive(context: ChannelHandlerContext) {
        cancel()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
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
        if awaitingHead, timer == nil { arm(header, context: context) }
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
