import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// A fault-injecting HTTP proxy on 127.0.0.1 in front of an S3/DynamoDB-compatible server (moto),
/// for reliability tests: point the clients' endpoint at `baseURL`.
///
/// Every request is forwarded as it came: method, path and query byte for byte, every header
/// (`Host` included, which SigV4 signs: the server checks the signature against the `Host` the
/// client sent, i.e. the proxy's), and the body; the server's answer goes back as it came (its body
/// aggregated, so re-framed with `Content-Length`). Each upstream request uses a fresh connection.
/// On the way, `FaultPlan` decides per request, deterministically from the seed and the request's
/// number (in order of arrival), which `FaultKind` to inject.
public final class FaultProxy: Sendable {
    public let upstream: URL
    public let seed: UInt64
    private let server: LoopbackHTTPServer
    private let core: Core

    /// A request the proxy faulted.
    public struct Event: Sendable, Hashable, CustomStringConvertible {
        /// The request's number, in order of arrival (0-based).
        public var request: Int
        public var fault: FaultKind
        public var method: String
        public var uri: String
        public var target: FaultTarget
        public var operation: String
        /// What the server answered, for faults that forward (`dropAfterSend`,
        /// `serverErrorAfterApply`); nil if not forwarded or the server could not be reached.
        public var upstreamStatus: Int?

        public var description: String {
            "#\(request) \(fault) \(operation) \(method) \(uri)"
                + (upstreamStatus.map { " (server answered \($0))" } ?? "")
        }
    }

    private struct State {
        var plan: FaultPlan
        var next = 0
        var faultsUnderPlan = 0
        var counts: [FaultKind: Int] = [:]
        var forwarded = 0
        var upstreamFailures = 0
        var events: [Event] = []
    }

    private final class Core: Sendable {
        let upstreamHost: String
        let upstreamPort: Int
        let seed: UInt64
        let timeout: Duration
        let state: Locked<State>
        static let maxEvents = 100_000

        init(upstreamHost: String, upstreamPort: Int, seed: UInt64, plan: FaultPlan, timeout: Duration) {
            self.upstreamHost = upstreamHost
            self.upstreamPort = upstreamPort
            self.seed = seed
            self.timeout = timeout
            self.state = Locked(State(plan: plan))
        }

        func handle(_ request: RecordedRequest) async -> HTTPResponseSpec {
            let (target, operation) = FaultProxy.classify(request)
            let (number, decision) = state.withLock { s in
                let n = s.next
                s.next += 1
                var d = s.plan.decide(seed: seed, request: n, target: target, operation: operation)
                if d.latency != nil || d.fault != nil {
                    if let max = s.plan.maxFaults, s.faultsUnderPlan >= max {
                        d = FaultDecision(latency: nil, fault: nil)
                    } else {
                        s.faultsUnderPlan += 1
                    }
                }
                if d.latency != nil { s.counts[.latency, default: 0] += 1 }
                if let fault = d.fault { s.counts[fault, default: 0] += 1 }
                return (n, d)
            }
            if let latency = decision.latency { try? await Task.sleep(for: latency) }
            guard let fault = decision.fault else { return await forward(request) }

            var upstreamStatus: Int?
            let answer: HTTPResponseSpec
            switch fault {
            case .latency:
                preconditionFailure("latency is not an exclusive fault")
            case .dropBeforeSend:
                answer = .drop
            case .throttle:
                answer = FaultProxy.throttlingError(target)
            case .serverError:
                answer = FaultProxy.internalError(target)
            case .dropAfterSend, .serverErrorAfterApply:
                let response = await forward(request)
                if !isProxyFailure(response) { upstreamStatus = response.status }
                answer = fault == .dropAfterSend ? .drop : FaultProxy.internalError(target)
            }
            let event = Event(
                request: number, fault: fault, method: request.method, uri: request.uri, target: target,
                operation: operation, upstreamStatus: upstreamStatus)
            state.withLock { s in
                if s.events.count < Self.maxEvents { s.events.append(event) }
            }
            return answer
        }

        private func isProxyFailure(_ response: HTTPResponseSpec) -> Bool {
            response.headers.contains { $0.name == FaultProxy.proxyErrorHeader }
        }

        private func forward(_ request: RecordedRequest) async -> HTTPResponseSpec {
            do {
                let response = try await UpstreamConnection.send(
                    request, host: upstreamHost, port: upstreamPort, timeout: timeout)
                state.withLock { $0.forwarded += 1 }
                return response
            } catch {
                state.withLock { $0.upstreamFailures += 1 }
                return HTTPResponseSpec(
                    status: 502,
                    headers: [("Content-Type", "text/plain"), (FaultProxy.proxyErrorHeader, "1")],
                    body: "fault proxy: upstream \(upstreamHost):\(upstreamPort) failed: \(error)")
            }
        }
    }

    /// Marks the proxy's own 502 answers when the upstream could not be reached.
    static let proxyErrorHeader = "X-Fault-Proxy-Error"

    private init(upstream: URL, seed: UInt64, server: LoopbackHTTPServer, core: Core) {
        self.upstream = upstream
        self.seed = seed
        self.server = server
        self.core = core
    }

    /// Starts a proxy on 127.0.0.1 (port chosen by the OS) in front of `upstream` (`http://host:port`;
    /// a path in it is ignored: requests keep their own path). `upstreamTimeout` bounds each
    /// forwarded exchange; past it the client gets a 502.
    public static func start(
        upstream: URL, plan: FaultPlan, seed: UInt64, upstreamTimeout: Duration = .seconds(30)
    ) async throws -> FaultProxy {
        try plan.validate()
        guard upstream.scheme == "http", let host = upstream.host else {
            throw FaultPlanError("the upstream must be an http:// URL with a host, not \(upstream)")
        }
        let core = Core(
            upstreamHost: host, upstreamPort: upstream.port ?? 80, seed: seed, plan: plan,
            timeout: upstreamTimeout)
        let server = try await LoopbackHTTPServer.start(recordRequests: false) { request in
            await core.handle(request)
        }
        return FaultProxy(upstream: upstream, seed: seed, server: server, core: core)
    }

    /// The endpoint to give the clients instead of the upstream's.
    public var baseURL: URL { server.baseURL }

    /// Faults injected so far, by kind (kinds never injected are absent).
    public var counts: [FaultKind: Int] { core.state.withLock { $0.counts } }

    /// Requests forwarded to the upstream and answered by it (those of `dropAfterSend` and
    /// `serverErrorAfterApply` included).
    public var forwarded: Int { core.state.withLock { $0.forwarded } }

    /// Requests received so far.
    public var received: Int { core.state.withLock { $0.next } }

    /// Forwarded requests the upstream did not answer (refused, reset, timed out): the client got a
    /// 502 from the proxy. Should stay 0.
    public var upstreamFailures: Int { core.state.withLock { $0.upstreamFailures } }

    /// The faulted requests, in order (the first 100 000).
    public var events: [Event] { core.state.withLock { $0.events } }

    /// The plan in force.
    public var plan: FaultPlan { core.state.withLock { $0.plan } }

    /// Replaces the plan for the requests that arrive from now on (e.g. `.none` to check the
    /// result through the proxy). The request numbering and the counts go on.
    public func setPlan(_ plan: FaultPlan) throws {
        try plan.validate()
        core.state.withLock {
            $0.plan = plan
            $0.faultsUnderPlan = 0
        }
    }

    /// One line for test output: the faults injected and the requests forwarded.
    public var summary: String {
        let s = core.state.withLock { $0 }
        let faults = FaultKind.allCases.map { "\($0)=\(s.counts[$0] ?? 0)" }.joined(separator: " ")
        return
            "fault proxy (seed \(seed)): \(s.next) requests, \(s.forwarded) forwarded, \(s.upstreamFailures) upstream failures; faults: \(faults)"
    }

    /// Stops listening and closes every client connection.
    public func shutdown() async throws {
        try await server.shutdown()
    }

    // MARK: Requests and answers

    /// The service and operation of a request: `PutItem` from `X-Amz-Target`, `Action` of a form
    /// post, or for S3 (path-style) `GetObject`, `PutObject`, `DeleteObject`, `HeadObject`,
    /// `ListObjectsV2`, `ListObjects`, `CreateBucket`, `HeadBucket`, `DeleteBucket`, or the bucket
    /// sub-resource, e.g. `PutBucket?encryption`.
    public static func classify(_ request: RecordedRequest) -> (target: FaultTarget, operation: String) {
        if let target = request.header("X-Amz-Target") {
            let operation = target.split(separator: ".").last.map(String.init) ?? target
            return (target.hasPrefix("DynamoDB_") ? .dynamoDB : .other, operation)
        }
        if request.method == "POST", request.path == "/",
            request.header("Content-Type")?.hasPrefix("application/x-www-form-urlencoded") == true
        {
            let action = request.bodyText.split(separator: "&").first { $0.hasPrefix("Action=") }
            return (.other, action.map { String($0.dropFirst("Action=".count)) } ?? "POST")
        }
        let segments = request.path.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: true)
        let hasKey = segments.count == 2 && !segments[1].isEmpty
        let queryKeys = (request.query ?? "").split(separator: "&").map {
            String($0.prefix { $0 != "=" })
        }
        let method = request.method
        if hasKey {
            switch method {
            case "GET": return (.s3, "GetObject")
            case "PUT":
                return (.s3, request.header("x-amz-copy-source") == nil ? "PutObject" : "CopyObject")
            case "DELETE": return (.s3, "DeleteObject")
            case "HEAD": return (.s3, "HeadObject")
            default: return (.s3, method + "Object")
            }
        }
        if method == "GET" && queryKeys.contains("list-type") { return (.s3, "ListObjectsV2") }
        if let sub = queryKeys.first(where: { !$0.isEmpty }), method != "GET" || !queryKeys.contains("prefix")
        {
            let verb = method.prefix(1) + method.dropFirst().lowercased()
            return (.s3, "\(verb)Bucket?\(sub)")
        }
        switch method {
        case "GET": return (.s3, "ListObjects")
        case "PUT": return (.s3, "CreateBucket")
        case "HEAD": return (.s3, "HeadBucket")
        case "DELETE": return (.s3, "DeleteBucket")
        default: return (.s3, method + "Bucket")
        }
    }

    static func requestID() -> String {
        String(UInt64.random(in: 0...UInt64.max), radix: 16, uppercase: true)
    }

    /// The service's throttling answer: S3 `503 SlowDown`, DynamoDB `400 ThrottlingException`.
    static func throttlingError(_ target: FaultTarget) -> HTTPResponseSpec {
        let id = requestID()
        switch target {
        case .dynamoDB:
            return HTTPResponseSpec(
                status: 400,
                headers: [("Content-Type", "application/x-amz-json-1.0"), ("x-amzn-RequestId", id)],
                body:
                    #"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate exceeded"}"#
            )
        case .s3, .other:
            return HTTPResponseSpec(
                status: 503, headers: [("Content-Type", "application/xml"), ("x-amz-request-id", id)],
                body:
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>\(id)</RequestId></Error>"
            )
        }
    }

    /// The service's internal error: S3 `500 InternalError`, DynamoDB `500 InternalServerError`.
    static func internalError(_ target: FaultTarget) -> HTTPResponseSpec {
        let id = requestID()
        switch target {
        case .dynamoDB:
            return HTTPResponseSpec(
                status: 500,
                headers: [("Content-Type", "application/x-amz-json-1.0"), ("x-amzn-RequestId", id)],
                body:
                    #"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"Internal server error"}"#
            )
        case .s3, .other:
            return HTTPResponseSpec(
                status: 500, headers: [("Content-Type", "application/xml"), ("x-amz-request-id", id)],
                body:
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message><RequestId>\(id)</RequestId></Error>"
            )
        }
    }
}

/// One HTTP/1.1 exchange with the upstream on a fresh connection, the request written exactly as
/// given (no header added, removed or re-framed).
enum UpstreamConnection {
    typealias Connection = NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func send(_ request: RecordedRequest, host: String, port: Int, timeout: Duration) async throws
        -> HTTPResponseSpec
    {
        let connection = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(5))
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    var encoder = HTTPRequestEncoder.Configuration()
                    encoder.automaticallySetFramingHeaders = false
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(
                        enableOutboundHeaderValidation: false, encoderConfiguration: encoder)
                    return try Connection(wrappingChannelSynchronously: channel)
                }
            }
        let channel = connection.channel
        let nanos =
            timeout.components.seconds * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000
        let timer = channel.eventLoop.scheduleTask(in: .nanoseconds(nanos)) { channel.close(promise: nil) }
        defer { timer.cancel() }
        return try await connection.executeThenClose { inbound, outbound in
            let head = HTTPRequestHead(
                version: .http1_1, method: HTTPMethod(rawValue: request.method), uri: request.uri,
                headers: HTTPHeaders(request.headers.map { ($0.name, $0.value) }))
            try await outbound.write(.head(head))
            if !request.body.isEmpty {
                try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: request.body))))
            }
            try await outbound.write(.end(nil))

            var response: HTTPResponseHead?
            var body: [UInt8] = []
            for try await part in inbound {
                switch part {
                case .head(let h):
                    response = h
                    body = []
                case .body(var buffer):
                    body += buffer.readBytes(length: buffer.readableBytes) ?? []
                case .end:
                    // An informational answer (100 Continue) comes before the real one.
                    guard let h = response, h.status.code >= 200 else {
                        response = nil
                        continue
                    }
                    return HTTPResponseSpec(
                        status: Int(h.status.code),
                        headers: h.headers.map { (name: $0.name, value: $0.value) },
                        body: body)
                }
            }
            throw Failure(description: "the connection closed before the answer was complete")
        }
    }
}
