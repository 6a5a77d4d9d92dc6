import Foundation
import NIOCore
import NIOHTTP1
import NIOHTTPTypesHTTP1

/// Looks at each request's HTTP/1 head where NIO's decoder left it, before the conversion to the
/// HTTP types that the application sees, which carry no protocol version, no repeated `Host` and
/// no transfer coding:
///
/// - It ends a connection after the answer to a request that does not ask to keep it (RFC 9112
///   §9.3): an HTTP/1.0 request without `Connection: keep-alive`, any request with
///   `Connection: close`, and a request that asks to change the protocol (`Upgrade`, `CONNECT`),
///   after which the decoder reads nothing more. Such a request gets the header
///   `Connection: close`, which makes the server stop reading after answering it and close its
///   side, and its answer says `Connection: close`.
/// - It marks a request whose framing the service refuses, in the header `requestProblem` (any such
///   header from the client is removed first), which `FrontMiddleware` answers: an HTTP/1.1 request
///   without exactly one valid `Host` (400, RFC 9112 §3.2), a transfer coding other than `chunked`
///   (501, RFC 9112 §6.1), `CONNECT` (501: the service is no proxy). Those end the connection too.
final class ConnectionPersistence: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart

    /// Puts a handler before the conversion to HTTP types in `pipeline` (nothing if there is none).
    static func install(in pipeline: ChannelPipeline.SynchronousOperations) {
        guard let conversion = try? pipeline.handler(type: HTTP1ToHTTPServerCodec.self) else { return }
        try? pipeline.addHandler(ConnectionPersistence(), position: .before(conversion))
    }

    /// The header that carries a request's framing problem to `FrontMiddleware`.
    static let requestProblem = "carbonstore-request-problem"

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(var head) = unwrapInboundIn(data) else {
            context.fireChannelRead(data)
            return
        }
        head.headers.remove(name: Self.requestProblem)
        let problem = Self.problem(of: head)
        if let problem { head.headers.add(name: Self.requestProblem, value: problem) }
        let ends =
            !head.isKeepAlive || problem != nil || head.method == .CONNECT
            || head.headers.contains(name: "upgrade")
        if ends { head.headers.replaceOrAdd(name: "connection", value: "close") }
        context.fireChannelRead(wrapInboundOut(.head(head)))
    }

    /// What is wrong with a request's framing, as `FrontMiddleware` reads it: `host` (missing,
    /// repeated or invalid), `transfer-coding`, `connect`; nil when nothing is.
    static func problem(of head: HTTPRequestHead) -> String? {
        if head.method == .CONNECT { return "connect" }
        let codings = head.headers[canonicalForm: "transfer-encoding"].map { $0.lowercased() }
        if !codings.isEmpty && codings != ["chunked"] { return "transfer-coding" }
        let hosts = head.headers["host"]
        if head.version != .http1_0 || !hosts.isEmpty {
            // White space around a field's value is not part of it (RFC 9110 §5.5).
            guard hosts.count == 1, isValidHost(hosts[0].trimmingCharacters(in: [" ", "\t"])) else {
                return "host"
            }
        }
        return nil
    }

    /// RFC 9110 §7.2: `uri-host [ ":" port ]`, the host a registered name (letters, digits,
    /// `-._~`, sub-delims, percent-escapes), an IPv4 address, or an IP literal in brackets; empty
    /// is allowed only where the URI scheme has no host, which is never here.
    static func isValidHost(_ value: String) -> Bool {
        var host = Substring(value)
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return false }
            let literal = host[host.index(after: host.startIndex)..<close]
            guard !literal.isEmpty, literal.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else {
                return false
            }
            host = host[host.index(after: close)...]
            guard host.isEmpty || host.hasPrefix(":") else { return false }
            return host.isEmpty || isPort(host.dropFirst())
        }
        if let colon = host.lastIndex(of: ":") {
            guard isPort(host[host.index(after: colon)...]) else { return false }
            host = host[..<colon]
        }
        let allowed = Set("-._~!$&'()*+,;=%".utf8)
        return !host.isEmpty
            && host.utf8.allSatisfy {
                ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || allowed.contains($0)
            }
    }

    static func isPort(_ text: Substring) -> Bool { text.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } }
}
