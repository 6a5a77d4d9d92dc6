import CarbonFormat

/// A held write lock on one name (a user's key).
public struct Lease: Sendable, Hashable {
    /// The locked name: the user's storage key.
    public var name: String
    /// The user the lease is for, so that lock errors name the user rather than the storage key.
    public var userID: String
    /// Unique per operation; release and renewal are conditioned on it.
    public var operationID: String
    /// After this instant (this process's monotonic clock) the lease may have passed to another
    /// writer; nil for locks that last until released (local file locks die with their process).
    public var validUntil: ContinuousClock.Instant?
    /// How long the lease lasts from acquisition or renewal (nil when it does not expire).
    public var term: Duration?

    public init(
        name: String, userID: String, operationID: String, validUntil: ContinuousClock.Instant?,
        term: Duration? = nil
    ) {
        self.name = name
        self.userID = userID
        self.operationID = operationID
        self.validUntil = validUntil
        self.term = term
    }

    /// Whether a third or more of the lease has passed, so it is time to renew it.
    public func isDueForRenewal(now: ContinuousClock.Instant = .now) -> Bool {
        guard let validUntil, let term else { return false }
        return now >= validUntil - term * 2 / 3
    }

    /// Whether the lease is still ours, with a safety margin for the write that follows.
    public func isValid(margin: Duration = .zero, now: ContinuousClock.Instant = .now) -> Bool {
        guard let validUntil else { return true }
        return now + margin < validUntil
    }
}

/// Serialises writers of the same name. The lock only reduces contention: correctness comes from
/// the conditional write of `ObjectStorage` (the fence).
public protocol LockService: Sendable {
    /// Waits up to `wait` for the lock on `name`, then throws `LockTimeoutError` naming `userID`.
    func acquire(_ name: String, userID: String, wait: Duration) async throws -> Lease

    /// Extends a lease, if this kind of lock expires. Throws `LeaseExpiredError` if it was lost.
    func renew(_ lease: Lease) async throws -> Lease

    /// Releases a lease. Never releases a lock that another operation holds now.
    func release(_ lease: Lease) async throws

    /// Releases a lease at once, without waiting on anything, if this kind of lock can be let go
    /// that way (a lock of this host: a file lock, a turn in this process). Returns whether the
    /// lease is no longer held; a later `release` of it does nothing. The engine calls it while an
    /// append of a user's file is made durable, when the storage keeps every other writer from
    /// writing until then (`ObjectStorage.append`'s `whenWritten`). The default returns false and
    /// keeps the lease (a DynamoDB lock is let go by a request, after the append).
    func releaseAtOnce(_ lease: Lease) -> Bool

    /// Checks that the lock service answers, without taking a lock (a readiness probe). Local locks
    /// always answer.
    func checkReachable() async throws

    /// Whether a task's cancellation can never leave a lock held: `acquire` either holds the lock
    /// when it returns or holds nothing when it throws, and `release` lets the lock go whether the
    /// task is cancelled or not (a file lock, a lock of this process, none). The engine then commits
    /// an update in the caller's own task (`Store.lead`). The default is false: a lock taken and
    /// let go by requests (DynamoDB), whose cancellation could leave a lock record behind until it
    /// expires.
    var leavesNothingHeldWhenCancelled: Bool { get }
}

extension LockService {
    public func checkReachable() async throws {}
    public func releaseAtOnce(_ lease: Lease) -> Bool { false }
    public var leavesNothingHeldWhenCancelled: Bool { false }
}

/// `locking=none`: no lock at all; writers rely on compare-and-swap and retry on conflict.
public struct NoLockService: LockService {
    public init() {}

    public func acquire(_ name: String, userID: String, wait: Duration) async throws -> Lease {
        Lease(name: name, userID: userID, operationID: OperationID.make(), validUntil: nil)
    }

    public func renew(_ lease: Lease) async throws -> Lease { lease }
    public func release(_ lease: Lease) async throws {}
    public func releaseAtOnce(_ lease: Lease) -> Bool { true }
    public var leavesNothingHeldWhenCancelled: Bool { true }
}

/// Operation ids: random 128-bit values in UUID text form.
public enum OperationID {
    public static func make() -> String {
        let (a, b) = RandomBits.pair()
        // 32 hex digits grouped 8-4-4-4-12.
        return String(unsafeUninitializedCapacity: 36) { out in
            var digits = [UInt8](repeating: 0, count: 32)
            digits.withUnsafeMutableBufferPointer {
                writeHex(a, into: $0, at: 0)
                writeHex(b, into: $0, at: 16)
            }
            var n = 0
            for (i, d) in digits.enumerated() {
                if i == 8 || i == 12 || i == 16 || i == 20 {
                    out[n] = UInt8(ascii: "-")
                    n += 1
                }
                out[n] = d
                n += 1
            }
            return n
        }
    }
}
