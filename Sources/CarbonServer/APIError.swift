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

    /// The answer for an engine error: its kind decides the status (`ErrorKind.httpStatus`).
    static func from(_ error: any CarbonStoreError) -> APIError {
        let message = error.description
        if let tooLarge = error as? RecordTooLargeStoreError {
            return .tooLarge(
                message + "; the user's record is full: remove items or split the user",
                limit: tooLarge.underlying.maximum)
        }
        switch error.kind {
        case .invalidInput: return .invalid(message)
        case .notFound: return .notFound(message)
        case .conflict: return APIError(.conflict, code: "conflict", message)
        case .corrupt: return APIError(.internalServerError, code: "corrupt_user_file", message)
        case .lockTimeout:
            var e = APIError.unavailable(
                code: "lock_timeout",
                (error as? LockTimeoutError).map {
                    "user '\($0.userID)' stayed locked by another writer for \($0.waitedMilliseconds) ms; retry the request"
                } ?? "the user stayed locked by another writer; retry the request")
            e.logDetail = message
            return e
        case .leaseExpired, .unavailable:
            var e = APIError.unavailable(
                code: "unavailable", "storage is unavailable for now; retry the request")
            e.logDetail = message
            return e
        case .storageFailure, .permissionDenied:
            return APIError(.internalServerError, code: "internal_error", message)
        }
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
