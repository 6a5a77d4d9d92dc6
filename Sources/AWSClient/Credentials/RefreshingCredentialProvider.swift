import AWSSigning
import Foundation

/// Caches another provider's credentials and refreshes them before they expire.
///
/// - Long-term credentials (no expiration) are fetched once and kept.
/// - Temporary credentials are refreshed when within `refreshBefore` (5 minutes) of expiring.
/// - At most one refresh runs at a time: concurrent callers await the same task.
/// - If a refresh fails while the cached credentials are still valid, they stay in use and the
///   refresh is tried again after `retryAfterFailure`; once they have expired, the error is thrown.
public actor RefreshingCredentialProvider: CredentialProvider {
    public nonisolated let base: any CredentialProvider
    public nonisolated let refreshBefore: Duration
    public nonisolated let retryAfterFailure: Duration
    private let now: @Sendable () -> Date

    private var cached: AWSCredentials?
    private var inFlight: Task<Result<AWSCredentials, any Error>, Never>?
    private var lastFailure: Date?
    /// How many times `base` was asked (for diagnostics and tests).
    public private(set) var fetchCount = 0

    public init(
        _ base: any CredentialProvider, refreshBefore: Duration = .seconds(300),
        retryAfterFailure: Duration = .seconds(10), now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.base = base
        self.refreshBefore = refreshBefore
        self.retryAfterFailure = retryAfterFailure
        self.now = now
    }

    public func credentials() async throws -> AWSCredentials {
        let t = now()
        if let cached {
            guard let expiration = cached.expiration else { return cached }
            if t < expiration.addingTimeInterval(-Self.seconds(refreshBefore)) { return cached }
            if t < expiration, let lastFailure,
                t < lastFailure.addingTimeInterval(Self.seconds(retryAfterFailure))
            {
                return cached
            }
        }
        let task: Task<Result<AWSCredentials, any Error>, Never>
        if let inFlight {
            task = inFlight
        } else {
            fetchCount += 1
            let base = self.base
            task = Task {
                let result: Result<AWSCredentials, any Error>
                do {
                    result = .success(try await base.credentials())
                } catch {
                    result = .failure(error)
                }
                return self.finish(result)
            }
            inFlight = task
        }
        switch await task.value {
        case .success(let credentials):
            return credentials
        case .failure(let error):
            if let cached, let expiration = cached.expiration, now() < expiration { return cached }
            throw error
        }
    }

    /// Forgets the cached credentials, e.g. after AWS rejected them as expired; the next call fetches.
    public func invalidate() {
        cached = nil
        lastFailure = nil
    }

    private func finish(_ result: Result<AWSCredentials, any Error>) -> Result<AWSCredentials, any Error> {
        inFlight = nil
        switch result {
        case .success(let credentials):
            cached = credentials
            lastFailure = nil
        case .failure:
            lastFailure = now()
        }
        return result
    }

    private static func seconds(_ d: Duration) -> TimeInterval {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
