/// `locking=local` for `memory:`: locks between the tasks of this process, handed out first come,
/// first served.
public final class InProcessLockService: LockService {
    private let turns = FairTurns()
    /// Operation id → (name, turn), for release.
    private let held = Locked([String: (name: String, turn: UInt64)]())

    public init() {}

    public func acquire(_ name: String, userID: String, wait: Duration) async throws -> Lease {
        let op = OperationID.make()
        let start = ContinuousClock.now
        guard let turn = await turns.take(name, wait: wait) else {
            throw LockTimeoutError(
                userID: userID, waitedMilliseconds: (ContinuousClock.now - start).milliseconds,
                holder: held.withLock { $0.first { $0.value.name == name }?.key }.map {
                    "operation \($0) in this process"
                })
        }
        held.withLock { $0[op] = (name, turn) }
        return Lease(name: name, userID: userID, operationID: op, validUntil: nil)
    }

    public func renew(_ lease: Lease) async throws -> Lease { lease }

    /// A turn's wait is not cut by a cancellation, and a release is immediate.
    public var leavesNothingHeldWhenCancelled: Bool { true }

    public func release(_ lease: Lease) async throws { _ = releaseAtOnce(lease) }

    public func releaseAtOnce(_ lease: Lease) -> Bool {
        // Never releases a lock that another operation holds now: only this operation's turn.
        if let entry = held.withLock({ $0.removeValue(forKey: lease.operationID) }) {
            turns.give(entry.name, entry.turn)
        }
        return true
    }
}
