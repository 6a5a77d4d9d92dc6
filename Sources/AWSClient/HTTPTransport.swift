import AWSSigning
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// An HTTP request as the AWS client sends it.
public struct HTTPRequest: Sendable {
    public var method: String
    public var url: URL
    public var headers: [HTTPHeader]
    public var body: [UInt8]

    public init(method: String, url: URL, headers: [HTTPHeader] = [], body: [UInt8] = []) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [HTTPHeader]
    public var body: [UInt8]

    public init(status: Int, headers: [HTTPHeader] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The first value of a header, case-insensitively.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    public var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// A request that did not get an HTTP response: refused, reset, timed out.
public struct TransportError: Error, Sendable, CustomStringConvertible {
    public var method: String
    public var url: String
    public var reason: String
    /// Whether the request may have reached the server (so a retry may repeat it).
    public var mayHaveBeenSent: Bool

    public init(method: String, url: String, reason: String, mayHaveBeenSent: Bool) {
        self.method = method
        self.url = url
        self.reason = reason
        self.mayHaveBeenSent = mayHaveBeenSent
    }

    public var description: String { "\(method) \(url) failed: \(reason)" }
}

/// Sends HTTP requests. The real one is `AsyncHTTPTransport`; tests may substitute their own.
public protocol HTTPTransport: Sendable {
    func send(_ request: HTTPRequest, timeout: Duration) async throws -> HTTPResponse
}

/// HTTP over async-http-client, sharing one connection pool.
public final class AsyncHTTPTransport: HTTPTransport {
    public let client: HTTPClient
    /// Responses larger than this are refused (user files are far smaller).
    public let maxResponseBytes: Int

    public init(connectTimeout: Duration = .seconds(3), maxResponseBytes: Int = 512 << 20) {
        var config = HTTPClient.Configuration()
        config.timeout.connect = .nanoseconds(Int64(connectTimeout.components.seconds) * 1_000_000_000)
        config.decompression = .disabled
        config.redirectConfiguration = .disallow
        // A failed connection attempt fails the request at once, so that `RetryPolicy` alone decides
        // about retries (and a refused connection is reported as refused, without waiting for the
        // connect timeout).
        config.connectionPool.retryConnectionEstablishment = false
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        self.maxResponseBytes = maxResponseBytes
    }

    /// The process-wide transport.
    public static let shared = AsyncHTTPTransport()

    /// Sends the request and reads the whole answer within `timeout`: one deadline covers the
    /// connection, sending, the response head and every byte of the body. A server that answers
    /// the head and then trickles the body is cut off when the deadline passes.
    public func send(_ request: HTTPRequest, timeout: Duration) async throws -> HTTPResponse {
        // A value HTTP cannot carry is named, never quoted (it may be a credential): the client
        // library's own error would quote it.
        if let bad = request.headers.first(where: { h in
            h.value.unicodeScalars.contains { ($0.value < 0x20 && $0 != "\t") || $0.value == 0x7F }
        }) {
            throw TransportError(
                method: request.method, url: Self.redacted(request.url),
                reason:
                    "the header \(bad.name) holds a line break or another control character, which HTTP does not allow; nothing was sent",
                mayHaveBeenSent: false)
        }
        var r = HTTPClientRequest(url: request.url.absoluteString)
        r.method = HTTPMethod(rawValue: request.method)
        for h in request.headers { r.headers.add(name: h.name, value: h.value) }
        if !request.body.isEmpty || ["PUT", "POST"].contains(request.method) {
            r.body = .bytes(ByteBuffer(bytes: request.body))
        }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        let nioDeadline = NIODeadline.now() + .nanoseconds(Self.nanoseconds(timeout))
        let prepared = r
        let limit = maxResponseBytes
        let client = client
        let shownURL = Self.redacted(request.url)
        func failure(_ reason: String, mayHaveBeenSent: Bool) -> TransportError {
            TransportError(
                method: request.method, url: shownURL, reason: reason, mayHaveBeenSent: mayHaveBeenSent)
        }
        let timedOut = failure(
            "no complete answer within the \(Self.describe(timeout)) deadline (connect, send, headers and body)",
            mayHaveBeenSent: true)
        do {
            // The exchange races a timer; whichever ends first decides, and the other is cancelled
            // (cancelling the exchange closes its connection, even in the middle of the body).
            return try await withThrowingTaskGroup(of: HTTPResponse?.self) { group in
                group.addTask {
                    let response = try await client.execute(prepared, deadline: nioDeadline)
                    var body = try await response.body.collect(upTo: limit)
                    let bytes = body.readBytes(length: body.readableBytes) ?? []
                    return HTTPResponse(
                        status: Int(response.status.code),
                        headers: response.headers.map { HTTPHeader($0.name, $0.value) },
                        body: bytes)
                }
                group.addTask {
                    try? await Task.sleep(until: deadline, clock: clock)
                    return nil
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let response = first else {
                    try Task.checkCancellation()
                    throw timedOut
                }
                return response
            }
        } catch let error as HTTPClientError {
            if error == .deadlineExceeded { throw timedOut }
            if error == .connectTimeout {
                throw failure("could not connect within the connect timeout", mayHaveBeenSent: false)
            }
            throw failure(Self.describe(error), mayHaveBeenSent: true)
        } catch let error as TransportError {
            throw error
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            let refused = Self.isConnectionRefused(error)
            throw failure(
                refused
                    ? "connection refused: nothing listens at \(Self.hostAndPort(request.url))"
                    : Self.describe(error),
                mayHaveBeenSent: !refused)
        }
    }

    static func nanoseconds(_ d: Duration) -> Int64 {
        let c = d.components
        return c.seconds * 1_000_000_000 + c.attoseconds / 1_000_000_000
    }

    /// "10 s", "1.5 s", "300 ms".
    static func describe(_ d: Duration) -> String {
        let ms = nanoseconds(d) / 1_000_000
        if ms < 1000 { return "\(ms) ms" }
        if ms % 1000 == 0 { return "\(ms / 1000) s" }
        return "\(Double(ms) / 1000) s"
    }

    static func hostAndPort(_ url: URL) -> String {
        let host = url.host ?? "?"
        return url.port.map { "\(host):\($0)" } ?? host
    }

    /// Whether a connection attempt was refused (nothing listens on the port): the request was
    /// certainly not sent.
    static func isConnectionRefused(_ error: any Error) -> Bool {
        if let e = error as? IOError, e.errnoCode == ECONNREFUSED { return true }
        return "\(error)".lowercased().contains("connection refused")
    }

    /// An error's text on one line, without unbalanced brackets from nested descriptions.
    static func describe(_ error: any Error) -> String {
        // NIO's own wording of a socket error can name another failure than the system's ("connection
        // reset" for an unreachable host): the system's message and number are what happened.
        if let e = error as? IOError {
            return "\(String(cString: strerror(e.errnoCode))) (errno \(e.errnoCode))"
        }
        var text = String(describing: error)
        // This error of the client library quotes the values it refused.
        if text.contains("invalidHeaderFieldValues") {
            return "a header value holds a character HTTP does not allow"
        }
        text = text.replacingOccurrences(of: "\n", with: " ")
        return text
    }

    /// The URL without its query (presigned URLs carry signatures there).
    static func redacted(_ url: URL) -> String {
        var c = URLComponents(url: url, resolvingAgainstBaseURL: false)
        c?.query = nil
        return c?.string ?? url.host ?? "?"
    }
}
