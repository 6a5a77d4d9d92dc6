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
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        self.maxResponseBytes = maxResponseBytes
    }

    /// The process-wide transport.
    public static let shared = AsyncHTTPTransport()

    public func send(_ request: HTTPRequest, timeout: Duration) async throws -> HTTPResponse {
        var r = HTTPClientRequest(url: request.url.absoluteString)
        r.method = HTTPMethod(rawValue: request.method)
        for h in request.headers { r.headers.add(name: h.name, value: h.value) }
        if !request.body.isEmpty || ["PUT", "POST"].contains(request.method) {
            r.body = .bytes(ByteBuffer(bytes: request.body))
        }
        let nanos =
            Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000
        do {
            let response = try await client.execute(r, timeout: .nanoseconds(nanos))
            var body = try await response.body.collect(upTo: maxResponseBytes)
            let bytes = body.readBytes(length: body.readableBytes) ?? []
            return HTTPResponse(
                status: Int(response.status.code),
                headers: response.headers.map { HTTPHeader($0.name, $0.value) },
                body: bytes)
        } catch let error as HTTPClientError {
            let refused = error == .connectTimeout || "\(error)".contains("connect")
            throw TransportError(
                method: request.method, url: Self.redacted(request.url), reason: String(describing: error),
                mayHaveBeenSent: !refused)
        } catch let error as TransportError {
            throw error
        } catch {
            throw TransportError(
                method: request.method, url: Self.redacted(request.url), reason: String(describing: error),
                mayHaveBeenSent: true)
        }
    }

    /// The URL without its query (presigned URLs carry signatures there).
    static func redacted(_ url: URL) -> String {
        var c = URLComponents(url: url, resolvingAgainstBaseURL: false)
        c?.query = nil
        return c?.string ?? url.host ?? "?"
    }
}
