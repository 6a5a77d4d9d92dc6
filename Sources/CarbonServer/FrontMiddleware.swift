import CarbonFormat
import CarbonStore
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// The first thing every request meets: it gives the request its id, turns it away while the
/// service drains, turns every error into the JSON error body, and logs and counts the answer.
struct FrontMiddleware: RouterMiddleware {
    typealias Context = CarbonRequestContext

    let drain: DrainState
    let metrics: ServerMetrics
    let routes: [APIRoute]

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let started = ContinuousClock.now
        var context = context
        context.requestID = Self.requestID(from: request.headers[.xRequestID])
        context.logger[metadataKey: "requestId"] = .string(context.requestID)
        var response: Response
        var failure: APIError?
        if drain.enter() {
            defer { drain.leave() }
            do {
                // The router drops empty segments, so `/v1/users//transactions` would reach the user
                // "transactions": an empty id is refused here, before any route runs, and so is
                // any other path with one (`//v1/...`, `/healthz/`), which names no route either.
                if let problem = request.headers[HTTPField.Name(ConnectionPersistence.requestProblem)!] {
                    throw Self.framingError(problem)
                }
                if Self.hasEmptySegment(request.uri.path) {
                    throw APIError.invalid(
                        "the path has an empty segment; an id must not be empty (send a / inside an id as %2F)"
                    )
                }
                response = try await next(request, context)
            } catch {
                let e = apiError(for: error, request: request, context: context)
                failure = e
                response = Self.response(for: e, requestID: context.requestID)
            }
        } else {
            var e = APIError.unavailable(
                code: "shutting_down",
                "this instance is shutting down; retry the request (another instance will take it)")
            e.headers = [(.connection, "close")]
            failure = e
            response = Self.response(for: e, requestID: context.requestID)
        }
        response.headers[.xRequestID] = context.requestID
        let route =
            failure?.route ?? context.endpointPath.flatMap { $0 == "NotFound" ? nil : $0 } ?? "unmatched"
        let duration = ContinuousClock.now - started
        metrics.request(
            method: request.method.rawValue, route: route, status: response.status.code, duration: duration)
        var meta: Logger.Metadata = [
            "method": .string(request.method.rawValue), "route": .string(route),
            "status": .stringConvertible(response.status.code),
            "durationMs": .string(Self.milliseconds(duration)),
        ]
        if let keyID = context.authenticatedKey.value { meta["keyId"] = .string(keyID) }
        if let failure {
            meta["code"] = .string(failure.code)
            if let id = failure.errorID { meta["errorId"] = .string(id) }
            if let detail = failure.logDetail { meta["detail"] = .string(detail) }
        }
        context.logger.info("request", metadata: meta)
        return response
    }

    /// The answer to a request whose framing `ConnectionPersistence` refused; it ends the connection.
    static func framingError(_ problem: String) -> APIError {
        var e: APIError
        switch problem {
        case "connect":
            e = APIError(
                .notImplemented, code: "not_implemented", "CONNECT is not served: this service is no proxy")
        case "transfer-coding":
            e = APIError(
                .notImplemented, code: "not_implemented",
                "the only transfer coding served is chunked; send the body as it is, or with Content-Length (a compressed body is refused: see Content-Encoding)"
            )
        default:
            e = APIError.invalid(
                "a request needs exactly one Host header with a valid host name (RFC 9112, section 3.2; an HTTP/1.0 request may have none)"
            )
        }
        e.headers = [(.connection, "close")]
        return e
    }

    /// Whether a path has an empty segment (`//`, or a `/` at the end).
    static func hasEmptySegment(_ path: String) -> Bool {
        path.utf8.count > 1 && (path.hasSuffix("/") || path.contains("//"))
    }

    static func milliseconds(_ d: Duration) -> String {
        let us = d.nanoseconds / 1000
        return "\(us / 1000).\(String(us % 1000 / 100))"
    }

    /// The caller's request id if it is 1 to 128 characters of `A-Z a-z 0-9 . _ -`, else a new one.
    static func requestID(from header: String?) -> String {
        if let header, (1...128).contains(header.utf8.count),
            header.utf8.allSatisfy({
                ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A)
                    || $0 == 0x2E || $0 == 0x5F || $0 == 0x2D
            })
        {
            return header
        }
        return newID()
    }

    static func newID() -> String {
        var g = SystemRandomNumberGenerator()
        return hexString((0..<16).map { _ in UInt8.random(in: .min ... .max, using: &g) })
    }

    /// The API error for anything a route threw; 500s get an error id and a log line with the
    /// whole story (the file's path for a corrupt file), the client a message without internals.
    func apiError(for error: any Error, request: Request, context: Context) -> APIError {
        var e: APIError
        switch error {
        case let api as APIError:
            e = api
        case let store as any CarbonStoreError:
            e = .from(store)
            // What the engine met, not what the client sent wrong.
            if e.status.code >= 500 || e.status == .conflict { metrics.storageError(kind: store.kind) }
        case let http as HTTPError where http.status == .notFound:
            e = notFoundOrWrongMethod(request)
        case is BodyReadError:
            // The client closed the connection or stopped sending inside its body: its fault, not
            // the storage's (and no one will read this answer).
            e = .invalid("the body ended before its declared length; send the whole body")
        case let http as HTTPError where http.status == .contentTooLarge:
            e = .tooLarge("the body is larger than the limit", limit: 0)
        case let http as HTTPError:
            e = APIError(
                http.status, code: http.status.code < 500 ? "invalid_request" : "internal_error",
                http.body ?? http.status.reasonPhrase)
        default:
            e = APIError(.internalServerError, code: "internal_error", String(describing: error))
        }
        // The service's own failures (a 501 answers the client's framing, and keeps its message).
        if e.status.code >= 500, e.status != .serviceUnavailable, e.status != .notImplemented {
            let id = Self.newID()
            e.errorID = id
            context.logger.error(
                "request failed",
                metadata: [
                    "errorId": .string(id), "code": .string(e.code),
                    "detail": .string(e.logDetail ?? e.message),
                ])
            switch e.code {
            case "corrupt_user_file":
                e.message =
                    e.clientMessage.map { "\($0); the log has the file's path under error id \(id)" }
                    ?? "the user's file cannot be read; it is left untouched for an operator, whose log has its path under error id \(id)"
            case "answer_too_large":
                // Says nothing of the storage: the client's next step is in it.
                break
            default:
                e.message = "the storage failed; the log has the details under error id \(id)"
            }
        }
        return e
    }

    /// 405 with `Allow` when the path is a route's and the method is not; else 404.
    func notFoundOrWrongMethod(_ request: Request) -> APIError {
        let path = request.uri.path
        let matching = routes.filter { $0.matches(path: path) }
        var allowed = matching.map(\.method.rawValue)
        if allowed.contains("GET") { allowed.append("HEAD") }
        guard !allowed.isEmpty else {
            return .notFound(
                "there is no route \(request.method.rawValue) \(String(path.prefix(200))); the routes are in /openapi.json"
            )
        }
        var e = APIError(
            .methodNotAllowed, code: "method_not_allowed",
            "\(request.method.rawValue) is not allowed here; use \(allowed.joined(separator: ", "))")
        e.headers = [(.allow, allowed.joined(separator: ", "))]
        e.route = matching.first?.path
        return e
    }

    static func errorBody(for e: APIError, requestID: String) -> ErrorBody {
        ErrorBody(
            error: .init(
                code: e.code, message: e.message, requestId: requestID, field: e.field, limit: e.limit,
                errorId: e.errorID))
    }

    static func response(for e: APIError, requestID: String) -> Response {
        // An error's body is a few lines: never over the answer limit.
        var response =
            (try? JSONBody.response(errorBody(for: e, requestID: requestID), status: e.status))
            ?? Response(status: e.status, body: .init(byteBuffer: ByteBuffer(string: JSONBody.unwritable)))
        if let s = e.retryAfterSeconds { response.headers[.retryAfter] = String(s) }
        if e.status == .unauthorized { response.headers[.wwwAuthenticate] = "Bearer realm=\"carbonstore\"" }
        for (name, value) in e.headers { response.headers[name] = value }
        return response
    }
}

extension HTTPField.Name {
    static let xRequestID = HTTPField.Name("X-Request-Id")!
    static let xRevision = HTTPField.Name("X-Revision")!
}
