import AWSSigning
import Foundation

/// Sends signed requests to one AWS service, with retries, and turns error answers into `AWSError`.
public struct AWSServiceClient: Sendable {
    /// The signing name, e.g. `s3` or `dynamodb`.
    public var service: String
    public var region: String
    public var endpoint: URL
    public var credentials: any CredentialProvider
    public var transport: any HTTPTransport
    public var retry: RetryPolicy
    public var timeout: Duration
    /// Counts the requests sent (attempts included), for cost figures and tests.
    public var metrics: RequestMetrics?

    public init(
        service: String, region: String, endpoint: URL, credentials: any CredentialProvider,
        transport: any HTTPTransport, retry: RetryPolicy = .standard, timeout: Duration = .seconds(10),
        metrics: RequestMetrics? = nil
    ) {
        self.service = service
        self.region = region
        self.endpoint = endpoint
        self.credentials = credentials
        self.transport = transport
        self.retry = retry
        self.timeout = timeout
        self.metrics = metrics
    }

    /// Sends a request, signing each attempt afresh. Answers with status >= 300 become `AWSError`
    /// through `parseError`, unless `accept` says the status is an expected outcome.
    public func send(
        _ request: HTTPRequest, operation: String, resource: String, idempotent: Bool = true,
        accept: (Int) -> Bool = { $0 < 300 }, parseError: (HTTPResponse) -> (code: String, message: String)
    ) async throws -> HTTPResponse {
        var attempt = 0
        var refetchedAfterExpiry = false
        while true {
            attempt += 1
            do {
                let creds = try await credentials.credentials()
                let signer = SigV4Signer(credentials: creds, region: region, service: service)
                var signed = request
                signed.headers += signer.signHeaders(
                    method: request.method, url: request.url, headers: request.headers,
                    payload: .bytes(request.body))
                metrics?.record(service: service, operation: operation)
                let response = try await transport.send(signed, timeout: timeout)
                if accept(response.status) { return response }
                let (code, message) = parseError(response)
                throw AWSError(
                    service: Self.displayName(service), operation: operation, resource: resource,
                    statusCode: response.status, code: code, message: message,
                    requestID: response.header("x-amz-request-id") ?? response.header("x-amzn-RequestId"),
                    bucketRegion: response.header("x-amz-bucket-region"))
            } catch {
                // Temporary credentials that AWS calls expired before the cache thought so (a clock
                // behind, a role's session cut short): fetched again once, and the request, refused
                // before it was applied, is sent again with them.
                if !refetchedAfterExpiry, let e = error as? AWSError, e.isExpiredToken,
                    let refreshing = credentials as? RefreshingCredentialProvider
                {
                    refetchedAfterExpiry = true
                    await refreshing.invalidate()
                    continue
                }
                switch retry.decide(attempt: attempt, error: error, idempotent: idempotent) {
                case .retry(let delay): try await Task.sleep(for: delay)
                case .giveUp:
                    if let e = error as? TransportError {
                        throw AWSUnreachableError(
                            service: Self.displayName(service), operation: operation, resource: resource,
                            endpoint: endpoint.absoluteString, attempts: attempt, reason: e.reason)
                    }
                    throw error
                }
            }
        }
    }

    static func displayName(_ service: String) -> String {
        switch service {
        case "s3": return "S3"
        case "dynamodb": return "DynamoDB"
        case "sts": return "STS"
        default: return service
        }
    }
}

/// AWS gave no complete answer (connection refused, reset, or the request's deadline passed)
/// after every attempt. `reason` is the last attempt's.
public struct AWSUnreachableError: Error, Sendable, Hashable, CustomStringConvertible {
    public var service: String
    public var operation: String
    public var resource: String
    public var endpoint: String
    public var attempts: Int
    public var reason: String

    public var description: String {
        let tries = attempts == 1 ? "1 attempt" : "\(attempts) attempts"
        return
            "\(service) \(operation) \(resource) failed: no complete answer from \(endpoint) after \(tries); last: \(SecretRedaction.redact(reason)); check the network, the endpoint and the region"
    }
}

/// Counts requests by service and operation. Thread-safe.
public final class RequestMetrics: Sendable {
    private let counts = LockedValue<[String: Int]>([:])

    public init() {}

    func record(service: String, operation: String) {
        counts.withLock { $0["\(service):\(operation)", default: 0] += 1 }
    }

    /// Requests per "service:operation".
    public var snapshot: [String: Int] { counts.withLock { $0 } }
    public var total: Int { counts.withLock { $0.values.reduce(0, +) } }
    public func reset() { counts.withLock { $0 = [:] } }
}
