import CarbonFormat
import CarbonModel
import CarbonStore
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// The routes of `carbonstore serve` over one `Store` (docs/API.md; the contract is openapi.json).
public struct CarbonAPI: Sendable {
    public let store: Store
    public let configuration: ServerConfiguration
    public let metrics: ServerMetrics
    public let drain: DrainState
    /// `/readyz`'s last answer, kept for a second.
    let readiness = ReadinessCache(lifetime: .seconds(1))

    /// The engine's events (lock waits, fence conflicts, bytes written, damaged tails) are counted
    /// in `metrics`; a damaged tail is logged too.
    public init(store: Store, configuration: ServerConfiguration, metrics: ServerMetrics, drain: DrainState) {
        var store = store
        store.options.events = metrics.storeEvents(logger: Logger(label: "carbonstore"))
        self.store = store
        self.configuration = configuration
        self.metrics = metrics
        self.drain = drain
    }

    typealias Handler = @Sendable (CarbonAPI, Request, CarbonRequestContext) async throws -> Response

    /// Every route, with its handler: the router is built from this table, and the contract test
    /// compares it with openapi.json.
    static let table: [(route: APIRoute, handler: Handler)] = [
        (APIRoute(method: .get, path: "/healthz"), { _, _, _ in try JSONBody.response(["status": "ok"]) }),
        (APIRoute(method: .get, path: "/readyz"), { api, _, _ in try await api.ready() }),
        (APIRoute(method: .get, path: "/metrics"), { api, _, _ in api.metricsText() }),
        (APIRoute(method: .get, path: "/openapi.json"), { _, _, _ in openAPIDocument() }),
        (APIRoute(method: .get, path: "/v1/users", role: .admin), { try await $0.listUsers($1, $2) }),
        (APIRoute(method: .get, path: "/v1/users/{userId}", role: .read), { try await $0.getUser($1, $2) }),
        (
            APIRoute(method: .delete, path: "/v1/users/{userId}", role: .admin),
            { try await $0.deleteUser($1, $2) }
        ),
        (
            APIRoute(method: .post, path: "/v1/users/{userId}/transactions", role: .write),
            { try await $0.addTransactions($1, $2) }
        ),
        (
            APIRoute(method: .get, path: "/v1/users/{userId}/transactions", role: .read),
            { try await $0.listTransactions($1, $2) }
        ),
        (
            APIRoute(method: .get, path: "/v1/users/{userId}/transactions/{transactionId}", role: .read),
            { try await $0.getTransaction($1, $2) }
        ),
        (
            APIRoute(method: .delete, path: "/v1/users/{userId}/transactions/{transactionId}", role: .write),
            { try await $0.deleteTransaction($1, $2) }
        ),
        (
            APIRoute(method: .put, path: "/v1/users/{userId}/responses/{questionId}", role: .write),
            { try await $0.putResponse($1, $2) }
        ),
        (
            APIRoute(method: .get, path: "/v1/users/{userId}/responses", role: .read),
            { try await $0.listResponses($1, $2) }
        ),
        (
            APIRoute(method: .get, path: "/v1/users/{userId}/preferences", role: .read),
            { try await $0.getPreferences($1, $2) }
        ),
        (
            APIRoute(method: .patch, path: "/v1/users/{userId}/preferences", role: .write),
            { try await $0.patchPreferences($1, $2) }
        ),
        (
            APIRoute(method: .post, path: "/v1/users/{userId}/footprints", role: .write),
            { try await $0.addFootprints($1, $2) }
        ),
        (
            APIRoute(method: .get, path: "/v1/users/{userId}/footprints", role: .read),
            { try await $0.listFootprints($1, $2) }
        ),
        (
            APIRoute(method: .post, path: "/v1/users/{userId}/savings", role: .write),
            { try await $0.addSavings($1, $2) }
        ),
        (
            APIRoute(method: .get, path: "/v1/users/{userId}/savings", role: .read),
            { try await $0.listSavings($1, $2) }
        ),
        (
            APIRoute(method: .get, path: "/v1/users/{userId}/summary", role: .read),
            { try await $0.summary($1, $2) }
        ),
    ]

    public static var routes: [APIRoute] { table.map(\.route) }

    /// The router: the front middleware, then each route behind its key check.
    public func router() -> Router<CarbonRequestContext> {
        // HEAD is answered wherever GET is (load balancers probe with it).
        let router = Router(context: CarbonRequestContext.self, options: .autoGenerateHeadEndpoints)
        router.add(middleware: FrontMiddleware(drain: drain, metrics: metrics, routes: Self.routes))
        for (route, handler) in Self.table {
            router.on(RouterPath(stringLiteral: route.path), method: route.method) { request, context in
                if let role = route.role { try authorize(request, context, role: role) }
                return try await handler(self, request, context)
            }
        }
        return router
    }

    // MARK: - Keys

    func authorize(_ request: Request, _ context: CarbonRequestContext, role: Role) throws(APIError) {
        guard let header = request.headers[.authorization] else {
            throw APIError(.unauthorized, code: "unauthorized", "send the key as Authorization: Bearer <key>")
        }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            throw APIError(
                .unauthorized, code: "unauthorized", "the Authorization header must be Bearer <key>")
        }
        guard let entry = configuration.keys.match(String(parts[1]).trimmed(" \t")) else {
            throw APIError(.unauthorized, code: "unauthorized", "the key is not one this service accepts")
        }
        context.authenticatedKey.value = entry.keyID
        guard entry.role >= role else {
            throw APIError(
                .forbidden, code: "forbidden",
                "this key has the role \(entry.role.rawValue); this request needs \(role.rawValue) or higher")
        }
    }

    // MARK: - Request parts

    /// A path parameter, percent-decoded byte for byte into UTF-8.
    func parameter(_ name: String, _ context: CarbonRequestContext, maxBytes: Int = 256) throws(APIError)
        -> String
    {
        guard let raw = context.parameters.get(name) else { throw .invalid("missing", field: name) }
        guard let text = PercentDecoding.decode(raw) else {
            throw .invalid("not valid percent-encoded UTF-8", field: name)
        }
        guard !text.isEmpty else { throw .invalid("must not be empty", field: name) }
        guard text.utf8.count <= maxBytes else {
            throw .invalid("at most \(maxBytes) bytes of UTF-8, this one has \(text.utf8.count)", field: name)
        }
        return text
    }

    func userID(_ context: CarbonRequestContext) throws(APIError) -> String {
        try parameter("userId", context, maxBytes: configuration.maxUserIDBytes)
    }

    /// The request body as JSON, within the size limit, of a JSON media type.
    func body(_ request: Request, mergePatch: Bool = false) async throws -> JSONValue {
        if let type = request.headers[.contentType] {
            let media =
                type.split(separator: ";", maxSplits: 1).first.map { String($0).trimmed(" \t").lowercased() }
                ?? ""
            let ok = media == "application/json" || (mergePatch && media == "application/merge-patch+json")
            // JSON is UTF-8 (RFC 8259): a charset parameter may only say so.
            let parameters = type.split(separator: ";").dropFirst().map { $0.trimmed(" \t").lowercased() }
            let charsetOK = parameters.allSatisfy {
                !$0.hasPrefix("charset=") || $0 == "charset=utf-8" || $0 == "charset=\"utf-8\""
            }
            guard ok, charsetOK else {
                throw APIError(
                    .unsupportedMediaType, code: "unsupported_media_type",
                    "the body must be JSON in UTF-8: send Content-Type: \(mergePatch ? "application/merge-patch+json or " : "")application/json"
                )
            }
        }
        // A compressed body would be parsed as its compressed bytes: refused, as RFC 9110 says
        // (415 for a content coding the server does not take).
        let codings = request.headers[values: .contentEncoding].flatMap { $0.split(separator: ",") }
            .map { $0.trimmed(" \t").lowercased() }.filter { !$0.isEmpty && $0 != "identity" }
        if !codings.isEmpty {
            var e = APIError(
                .unsupportedMediaType, code: "unsupported_media_type",
                "the body must not be compressed (Content-Encoding: \(codings.joined(separator: ", "))): send it as plain JSON"
            )
            e.headers = [(.acceptEncoding, "identity")]
            throw e
        }
        let limit = configuration.maxBodyBytes
        var tooLarge = APIError.tooLarge("the body is larger than \(limit) bytes", limit: limit)
        tooLarge.headers = [(.connection, "close")]
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit { throw tooLarge }
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw tooLarge  // a chunked body that grew past the limit
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw tooLarge
        } catch let error as APIError {
            throw error
        } catch {
            throw BodyReadError(underlying: String(describing: error))
        }
        let bytes = Array(buffer.readableBytesView)
        guard !bytes.isEmpty else { throw APIError.invalid("the body is empty; send a JSON object") }
        do {
            return try JSONReader.parse(bytes)
        } catch {
            throw APIError.invalid("the body is not JSON: \(error.problem) at byte \(error.offset)")
        }
    }

    struct Query {
        var from: Timestamp?
        var to: Timestamp?
        var limit: Int
        var cursor: String?
    }

    func query(_ request: Request, paged: Bool) throws(APIError) -> Query {
        let q = request.uri.queryParameters
        // A parameter given twice has no one meaning: refused, not read as its first value.
        for name in paged ? ["from", "to", "limit", "cursor"] : ["from", "to"] {
            let count = q.getAll(name).count
            if count > 1 { throw .invalid("'\(name)' is given \(count) times; give it once", field: name) }
        }
        func time(_ name: String) throws(APIError) -> Timestamp? {
            guard let v = q.get(name) else { return nil }
            return try Inputs.time(v, at: name)
        }
        var result = Query(from: try time("from"), to: try time("to"), limit: 100, cursor: nil)
        if let from = result.from, let to = result.to, to < from {
            throw .invalid("'to' (\(to)) is before 'from' (\(from))", field: "to")
        }
        if paged {
            if let text = q.get("limit") {
                guard let n = Int(text), (1...1000).contains(n) else {
                    throw .invalid(
                        "'\(text.prefix(40))' is not a whole number from 1 to 1000", field: "limit")
                }
                result.limit = n
            }
            result.cursor = q.get("cursor")
        }
        return result
    }

    static func inRange(_ t: Timestamp, _ q: Query) -> Bool {
        (q.from.map { t >= $0 } ?? true) && (q.to.map { t < $0 } ?? true)
    }

    /// The user's record, or 404.
    func record(_ userID: String) async throws -> UserRecord {
        guard let record = try await store.read(userID) else {
            throw APIError.notFound("user '\(userID)' has no record")
        }
        return record
    }

    // MARK: - Service routes

    func ready() async throws -> Response {
        let (store, metrics) = (store, metrics)
        let failure = await readiness.check {
            do {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await store.checkReachable() }
                    group.addTask {
                        try await Task.sleep(for: Self.readinessDeadline)
                        throw ReadinessTimeoutError(deadline: Self.readinessDeadline)
                    }
                    try await group.next()
                    group.cancelAll()
                }
                return nil
            } catch {
                if let engine = error as? any CarbonStoreError { metrics.storageError(kind: engine.kind) }
                return (error as? any CarbonStoreError)?.description ?? String(describing: error)
            }
        }
        if let failure {
            var e = APIError.unavailable(
                code: "unavailable", "storage or locks are not reachable; the log of this request says why",
                retryAfter: 5)
            e.logDetail = failure
            throw e
        }
        return try JSONBody.response(["status": "ready"])
    }

    /// `/readyz`'s check, made at most once per `lifetime` and shared by the probes that come while it
    /// runs: anyone who can reach the port (the route takes no key) cannot turn each request into a
    /// listing and a lock lookup, paid requests on S3 and DynamoDB.
    actor ReadinessCache {
        let lifetime: Duration
        /// When the last check ended, and why it failed (nil: it passed).
        var last: (at: ContinuousClock.Instant, failure: String?)?
        var running: Task<String?, Never>?

        init(lifetime: Duration) { self.lifetime = lifetime }

        /// The failure of a check at most `lifetime` old, or of a new one made by `body`.
        func check(_ body: @escaping @Sendable () async -> String?) async -> String? {
            if let last, ContinuousClock.now - last.at < lifetime { return last.failure }
            if let running { return await running.value }
            let task = Task { await body() }
            running = task
            let failure = await task.value
            running = nil
            last = (ContinuousClock.now, failure)
            return failure
        }
    }

    /// How long `/readyz` waits for storage and locks before it answers 503, so that a probe with a
    /// short timeout gets an answer, and a hung backend cannot hold a drain.
    static let readinessDeadline: Duration = .seconds(3)

    struct ReadinessTimeoutError: Error, CustomStringConvertible {
        var deadline: Duration
        var description: String { "storage or locks did not answer within \(deadline)" }
    }

    func metricsText() -> Response {
        Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: metrics.render())))
    }

    static func openAPIDocument() -> Response {
        Response(
            status: .ok, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: PackageResources.openapi_json)))
    }

    // MARK: - Users

    struct UserPage: Encodable {
        var users: [String]
        var nextCursor: String?
    }

    func listUsers(_ request: Request, _ context: CarbonRequestContext) async throws -> Response {
        let q = try query(request, paged: true)
        var after: String?
        if let cursor = q.cursor {
            guard let bytes = [UInt8](hexDigits: cursor), let key = String(validating: bytes, as: UTF8.self),
                store.keys.userID(forKey: key) != nil
            else { throw APIError.invalid("not a cursor this service gave out", field: "cursor") }
            after = key
        }
        let page = try await store.listUsers(after: after, limit: q.limit)
        return try JSONBody.response(
            UserPage(users: page.userIDs, nextCursor: page.cursor.map { hexString(Array($0.utf8)) }))
    }

    func getUser(_ request: Request, _ context: CarbonRequestContext) async throws -> Response {
        try JSONBody.response(try await record(try userID(context)))
    }

    struct Deleted: Encodable {
        var userId: String
        var deleted: Bool
    }

    func deleteUser(_ request: Request, _ context: CarbonRequestContext) async throws -> Response {
        let id = try userID(context)
        switch try await store.delete(id) {
        case .deleted, .goneAfterRetry: return try JSONBody.response(Deleted(userId: id, deleted: true))
        case .notFound: throw APIError.notFound("user '\(id)' has no record")
        }
    }
}
