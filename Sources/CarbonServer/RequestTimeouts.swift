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
/// draining), and of the answer to a request that ends its connection (`Connection: close`, which
/// `ConnectionPersistence` also gives to HTTP/1.0 requests without keep-alive and to `Upgrade` and
/// `CONNECT`, after which the decoder reads nothing more): once that answer is written it closes
/// the output, so the client sees the end of the stream; what the client still sends (the rest of
/// a body too large, a next request) is dropped, up to `lingerAllowance` bytes counted from the
/// answer's first byte (or from the end of the client's own ending request, whose body is read
/// first); the connection is closed when the client closes it, after `header`, or past that
/// allowance, whichever comes first. It does not close at once: a connection closed with unread
/// input is reset, and a reset can destroy the response before the client has read it.
///
/// And it bounds what one request may send: at most eight times `maxBodyBytes` plus
/// `drainAllowance` bytes from its head on (a body within the limit, even in chunks of one byte,
/// which carry five bytes of framing each), then the connection is closed. A route that reads the
/// body answers 413 long before that. A request answered before its body has arrived (a route that
/// takes no body, a 401, a 404) has the rest of its body read and dropped, so that a body within
/// the limit does not cost the client its answer or the connection; an endless one (a declared
/// 100 GB, endless chunk extensions, which carry no body) is cut there.
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
    /// The connection is ending and its input is only counted and dropped (`lingered` counts it).
    var closing = false
    /// The answer being written ends the connection: its output is closed after it.
    var answerEnds = false
    /// The answer to a request that ends the connection began before that request's body ended:
    /// the rest of the body is dropped (within `requestAllowance`), then the connection lingers.
    var draining = false
    /// The most bytes of a request that may arrive before its answer (see the type's comment).
    let requestAllowance: Int
    /// A request's head was read and its end was not.
    var inRequest = false
    /// For each request read and not yet answered, oldest first: whether it ends the connection.
    var requestsEnd: [Bool] = []
    /// Raw bytes received since the current request's head.
    var receivedInRequest = 0

    /// Room for a request's framing beyond eight times its body's limit.
    static let drainAllowance = 64 << 10
    /// How many bytes are read and dropped once the connection is ending (from the head of the
    /// answer that ends it, or from the end of its request if that comes later), so that a client
    /// still sending has time to read the answer, before the connection is closed.
    static let lingerAllowance = 1 << 20
    /// Bytes dropped since the connection began to end (nil before that).
    var lingered: Int?

    init(header: TimeAmount, body: TimeAmount, send: TimeAmount, maxBodyBytes: Int = 1 << 20) {
        self.header = header
        self.body = body
        self.send = send
        self.requestAllowance = 8 * maxBodyBytes + Self.drainAllowance
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
        case .head(let head):
            // `ConnectionPersistence` gives every request that ends its connection exactly `close`.
            requestsEnd.append(head.headerFields[.connection]?.lowercased() == "close")
            awaitingHead = false
            inRequest = true
            receivedInRequest = 0
            arm(body, context: context)
        case .end:
            awaitingHead = true
            inRequest = false
            cancel()
            if draining {
                // The rest of the ending request's body has arrived: what comes after only lingers,
                // for `header` at most (the answer's output is closed, or will be once written).
                draining = false
                startLingering()
                arm(header, context: context)
                return
            }
        case .body:
            break
        }
        if draining { return }
        context.fireChannelRead(data)
    }

    /// From now on input is counted and dropped, and the connection is closed past `lingerAllowance`.
    func startLingering() {
        closing = true
        if lingered == nil { lingered = 0 }
    }

    /// `count` raw bytes arrived (ByteWatch, before the decoder).
    func bytesArrived(_ count: Int, context: ChannelHandlerContext) {
        if awaitingHead, timer == nil, !closing { arm(header, context: context) }
        if let dropped = lingered {
            lingered = dropped + count
            if dropped + count > Self.lingerAllowance { context.close(promise: nil) }
            return
        }
        guard inRequest else { return }
        receivedInRequest += count
        if receivedInRequest > requestAllowance { context.close(promise: nil) }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head):
            // Each answer's head pairs with the oldest request not yet answered.
            let requestEnds = requestsEnd.isEmpty ? false : requestsEnd.removeFirst()
            let answerCloses = head.headerFields[.connection]?.lowercased() == "close"
            if requestEnds || answerCloses {
                // The answer to a request that ends the connection says so (RFC 9112 §9.6).
                head.headerFields[.connection] = "close"
                answerEnds = true
                // The client's own ending request, answered before its body ended (a 401 to an
                // upload): the rest of its body, within the limit, is read and dropped first, so
                // that the client, which may read only once it has sent it all, gets its answer.
                // Otherwise (the service's own close, a 413; a request that has ended) input is
                // dropped from here, counted from the answer's first byte: an answer that takes
                // long to write, or a decoder that stopped after an `Upgrade`, cannot make the
                // service take in more than `lingerAllowance`.
                if requestEnds && !answerCloses && inRequest { draining = true } else { startLingering() }
            }
            context.write(wrapOutboundOut(.head(head)), promise: promise)
        case .end where answerEnds:
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.cascade(to: promise)
            context.write(data, promise: written)
            written.futureResult.assumeIsolated().whenComplete { _ in
                context.close(mode: .output, promise: nil)
                // While the rest of a request's body is still dropped, its body timer runs on.
                if !self.draining { self.arm(self.header, context: context) }
            }
        case .end:
            context.write(data, promise: promise)
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
            owner?.bytesArrived(unwrapInboundIn(data).readableBytes, context: context)
            context.fireChannelRead(data)
        }
    }
}
