import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// One request as the loopback server received it, for assertions.
public struct RecordedRequest: Sendable {
    public var method: String
    /// The request target as sent: path and query, e.g. `/latest/api/token?x=1`.
    public var uri: String
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// Which connection it arrived on (0, 1, ...), to check keep-alive reuse.
    public var connection: Int

    public init(
        method: String, uri: String, headers: [(name: String, value: String)], body: [UInt8],
        connection: Int = 0
    ) {
        self.method = method
        self.uri = uri
        self.headers = headers
        self.body = body
        self.connection = connection
    }

    /// The path without the query.
    public var path: String { String(uri.prefix { $0 != "?" }) }

    /// The query without the `?`, or nil when there is none.
    public var query: String? {
        guard let i = uri.firstIndex(of: "?") else { return nil }
        return String(uri[uri.index(after: i)...])
    }

    /// The first value of a header, case-insensitively.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    public var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// What the loopback server answers.
public struct HTTPResponseSpec: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// Close the connection without answering (the client sees a reset / early close).
    public var dropConnection: Bool
    /// When set, the head is sent at once (with the full Content-Length) and the body one byte at a
    /// time, with this pause before each byte: a server that stalls in the middle of a body.
    public var trickle: Duration?

    public init(status: Int = 200, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
        self.dropConnection = false
        self.trickle = nil
    }

    public init(status: Int = 200, headers: [(name: String, value: String)] = [], body: String) {
        self.init(status: status, headers: headers, body: Array(body.utf8))
    }

    public static func text(_ body: String, status: Int = 200) -> HTTPResponseSpec {
        HTTPResponseSpec(status: status, headers: [("Content-Type", "text/plain")], body: body)
    }

    public static func json(_ body: String, status: Int = 200) -> HTTPResponseSpec {
        HTTPResponseSpec(status: status, headers: [("Content-Type", "application/json")], body: body)
    }

    public static func xml(_ body: String, status: Int = 200) -> HTTPResponseSpec {
        HTTPResponseSpec(status: status, headers: [("Content-Type", "text/xml")], body: body)
    }

    /// Answers `body` one byte at a time, pausing `every` before each byte.
    public static func trickling(
        _ body: [UInt8], every: Duration, status: Int = 200, headers: [(name: String, value: String)] = []
    ) -> HTTPResponseSpec {
        var r = HTTPResponseSpec(status: status, headers: headers, body: body)
        r.trickle = every
        return r
    }

    /// Closes the connection without a response.
    public static var drop: HTTPResponseSpec {
        var r = HTTPResponseSpec(status: 0)
        r.dropConnection = true
        return r
    }
}

/// A small HTTP/1.1 server on 127.0.0.1 with an OS-chosen port, for fakes of HTTP services
/// (instance metadata, container credentials, STS, ...). Every request is recorded; the handler
/// decides the answer. Bodies are aggregated in full; connections are kept alive unless the client
/// asks otherwise; requests on one connection are answered in order.
public final class LoopbackHTTPServer: Sendable {
    public typealias Handler = @Sendable (RecordedRequest) async -> HTTPResponseSpec

    private typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

    private struct State {
        var requests: [RecordedRequest] = []
        var children: [ObjectIdentifier: any Channel] = [:]
        var connections = 0
        var closed = false
        var recordRequests = true
    }

    public let port: Int
    private let serverChannel: any Channel
    private let state: Locked<State>
    private let runTask: Locked<Task<Void, Never>?>

    /// Requests larger than this are refused with 413.
    public static let maxRequestBytes = 64 << 20

    private init(port: Int, serverChannel: any Channel) {
        self.port = port
        self.serverChannel = serverChannel
        self.state = Locked(State())
        self.runTask = Locked(nil)
    }

    /// Starts listening on 127.0.0.1, port chosen by the OS. With `recordRequests` false, requests
    /// are not kept (for long runs, e.g. a proxy); `requests` then stays empty.
    public static func start(recordRequests: Bool = true, handler: @escaping Handler) async throws
        -> LoopbackHTTPServer
    {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: "127.0.0.1", port: 0) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    return try Connection(wrappingChannelSynchronously: channel)
                }
            }
        guard let port = server.channel.localAddress?.port else {
            try? await server.channel.close()
            throw CocoaError(
                .fileNoSuchFile, userInfo: [NSLocalizedDescriptionKey: "loopback server has no port"])
        }
        let instance = LoopbackHTTPServer(port: port, serverChannel: server.channel)
        instance.state.withLock { $0.recordRequests = recordRequests }
        let task = Task {
            await withDiscardingTaskGroup { group in
                do {
                    try await server.executeThenClose { inbound in
                        for try await connection in inbound {
                            guard let number = instance.register(connection.channel) else {
                                try? await connection.channel.close()
                                continue
                            }
                            group.addTask {
                                await instance.serve(connection, number: number, handler: handler)
                                instance.unregister(connection.channel)
                            }
                        }
                    }
                } catch {
                    // The listening socket closed (shutdown) or failed: stop accepting.
                }
            }
        }
        instance.runTask.withLock { $0 = task }
        return instance
    }

    public var baseURL: URL { URL(string: "http://127.0.0.1:\(port)")! }

    /// Every request received so far, in order of arrival.
    public var requests: [RecordedRequest] { state.withLock { $0.requests } }

    public var requestCount: Int { state.withLock { $0.requests.count } }

    /// Forgets the recorded requests.
    public func clearRequests() { state.withLock { $0.requests.removeAll() } }

    /// Stops listening, closes every open connection and waits for the handlers to finish.
    public func shutdown() async throws {
        let children = state.withLock { s -> [any Channel] in
            s.closed = true
            return Array(s.children.values)
        }
        try? await serverChannel.close()
        for child in children { try? await child.close() }
        let task = runTask.withLock { $0 }
        task?.cancel()
        await task?.value
    }

    private func register(_ channel: any Channel) -> Int? {
        state.withLock { s in
            if s.closed { return nil }
            s.children[ObjectIdentifier(channel)] = channel
            s.connections += 1
            return s.connections - 1
        }
    }

    private func unregister(_ channel: any Channel) {
        _ = state.withLock { $0.children.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    private func record(_ request: RecordedRequest) {
        state.withLock { s in
            if s.recordRequests { s.requests.append(request) }
        }
    }

    private func serve(_ connection: Connection, number: Int, handler: Handler) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                var head: HTTPRequestHead?
                var body: [UInt8] = []
                var tooLarge = false
                for try await part in inbound {
                    switch part {
                    case .head(let h):
                        head = h
                        body = []
                        tooLarge = false
                    case .body(var buffer):
                        if body.count + buffer.readableBytes > Self.maxRequestBytes {
                            tooLarge = true
                        } else {
                            body += buffer.readBytes(length: buffer.readableBytes) ?? []
                        }
                    case .end:
                        guard let h = head else { continue }
                        head = nil
                        let request = RecordedRequest(
                            method: h.method.rawValue, uri: h.uri,
                            headers: h.headers.map { (name: $0.name, value: $0.value) }, body: body,
                            connection: number)
                        record(request)
                        var spec =
                            tooLarge
                            ? HTTPResponseSpec.text("request body too large", status: 413)
                            : await handler(request)
                        if spec.dropConnection { return }
                        if Task.isCancelled { return }
                        let keepAlive = h.isKeepAlive && !tooLarge
                        // A HEAD answer may state the length of the body a GET would get.
                        let headLength =
                            h.method == .HEAD
                            ? spec.headers.first { $0.name.lowercased() == "content-length" }?.value : nil
                        spec.headers.removeAll {
                            ["content-length", "connection", "transfer-encoding"].contains(
                                $0.name.lowercased())
                        }
                        var headers = HTTPHeaders(spec.headers.map { ($0.name, $0.value) })
                        headers.add(name: "Content-Length", value: headLength ?? String(spec.body.count))
                        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
                        let responseHead = HTTPResponseHead(
                            version: h.version, status: HTTPResponseStatus(statusCode: spec.status),
                            headers: headers)
                        try await outbound.write(.head(responseHead))
                        if !spec.body.isEmpty, h.method != .HEAD {
                            if let pause = spec.trickle {
                                for byte in spec.body {
                                    try await Task.sleep(for: pause)
                                    try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: [byte]))))
                                }
                            } else {
                                try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: spec.body))))
                            }
                        }
                        try await outbound.write(.end(nil))
                        if !keepAlive { return }
                    }
                }
            }
        } catch {
            // The client went away, or shutdown closed the connection.
        }
    }
}
