import CarbonStore
import HTTPTypes

/// Everything the service answers with an error status: the status, a stable `code`, a message
/// that says what was wrong and how to fix it, and, when they apply, the field path, the limit,
/// an error id (for 500s, naming the log line) and the seconds after which to retry.
/// The body is `{"error": {"code", "message", "requestId", "field"?, "limit"?, "errorId"?}}`.
public struct APIError: Error, Sendable, CustomStringConvertible {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    public var field: String?
    public var limit: Int?
    public var errorID: String?
    public var retryAfterSeconds: Int?
    /// What the log line of the request says besides the message: details meant for an operator
    /// (a lock holder's process and host, a storage error's path), never sent to the client.
    public var logDetail: String?
    /// The route the request's path matched, for the metrics and the log, when the router did not
    /// match it (a 405).
    public var route: String?
    /// For a 500 whose details stay in the log: what the client is told instead of the storage's
    /// generic line (before the error id).
    var clientMessage: String?
    /// Headers the status needs (`WWW-Authenticate`, `Allow`, `Connection`).
    public var headers: [(HTTPField.Name, String)] = []

    public init(
        _ status: HTTPResponse.Status, code: String, _ message: String, field: String? = nil,
        limit: Int? = nil
    ) {
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.limit = limit
    }

    public var description: String { "\(status.code) \(code): \(message)" }

    static func invalid(_ message: String, field: String? = nil) -> APIError {
        APIError(
            .badRequest, code: "invalid_request", field.map { "\($0): \(message)" } ?? message, field: field)
    }

    static func notFound(_ message: String) -> APIError { APIError(.notFound, code: "not_found", message) }

    static func tooLarge(_ message: String, limit: Int, field: String? = nil) -> APIError {
        APIError(.contentTooLarge, code: "payload_too_large", message, field: field, limit: limit)
    }

    static func unavailable(code: String, _ message: String, retryAfter: Int = 1) -> APIError {
        var e = APIError(.serviceUnavailable, code: code, message)
        e.retryAfterSeconds = retryAfter
        return e
    }

    /// The answer for an engine error. Only errors about the request itself (a user id, a record
    /// that would be too large, a write that kept conflicting) are told to the client as they are.
    /// Everything else comes from the storage or its configuration (a missing bucket or table,
    /// credentials, a path): the client hears that storage failed or is unavailable, and the
    /// request's log line has the engine's text (`logDetail`).
    static func from(_ error: any CarbonStoreError) -> APIError {
        let message = error.description
        switch error {
        case let tooLarge as RecordTooLargeStoreError:
            return .tooLarge(
                message + "; the user's record is full: remove items or split the user",
                limit: tooLarge.underlying.maximum)
        case is InvalidUserIDError:
            return .invalid(message, field: "userId")
        case is UserNotFoundError:
            return .notFound(message)
        case is WriteConflictError:
            return APIError(.conflict, code: "conflict", message)
        case let tooLarge as AnswerTooLargeError:
            // The request is right, the record too large to answer whole: the service's limit.
            return APIError(.internalServerError, code: "answer_too_large", message, limit: tooLarge.limit)
        default:
            break
        }
        var e: APIError
        switch error.kind {
        case .corrupt:
            e = APIError(.internalServerError, code: "corrupt_user_file", message)
            if error is DamagedTailError {
                e.clientMessage =
                    "the user's file has damaged bytes after its valid content: reads serve the record before them, and writes are refused until an operator repairs the file"
            }
        case .lockTimeout:
            e = .unavailable(
                code: "lock_timeout",
                (error as? LockTimeoutError).map {
                    "user '\($0.userID)' stayed locked by another writer for \($0.waitedMilliseconds) ms; retry the request"
                } ?? "the user stayed locked by another writer; retry the request")
        case .leaseExpired, .unavailable:
            e = .unavailable(code: "unavailable", "storage is unavailable for now; retry the request")
        case .invalidInput, .notFound, .conflict, .storageFailure, .permissionDenied:
            // A storage error that is not the client's: a missing bucket or table, refused
            // credentials, a configuration to fix. FrontMiddleware gives it an error id.
            e = APIError(.internalServerError, code: "internal_error", message)
        }
        e.logDetail = message
        return e
    }
}

/// The body of every error answer.
struct ErrorBody: Encodable {
    struct Detail: Encodable {
        var code: String
        var message: String
        var requestId: String
        var field: String?
        var limit: Int?
        var errorId: String?
    }
    var error: Detail
}

/// The request body could not be read whole: the client closed the connection, or the body
/// timeout closed it, before the body's end.
struct BodyReadError: Error {
    var underlying: String
}
