/// `memory:`: objects in this process's memory. For tests and demos; nothing survives the process.
public final class MemoryStorage: ObjectStorage {
    private struct Entry {
        var bytes: [UInt8]
        var generation: UInt64
    }

    private struct State {
        var objects: [String: Entry] = [:]
        var nextGeneration: UInt64 = 1
    }

    private let state = Locked(State())

    public init() {}

    public func get(_ key: String) async throws -> StoredObject? {
        state.withLock { s in
            s.objects[key].map { StoredObject(bytes: $0.bytes, version: ObjectVersion("g\($0.generation)")) }
        }
    }

    @discardableResult
    public func put(_ key: String, bytes: [UInt8], condition: WriteCondition) async throws -> ObjectVersion {
        try state.withLock { (s: inout State) throws(VersionMismatchError) -> ObjectVersion in
            let current = s.objects[key].map { ObjectVersion("g\($0.generation)") }
            try Self.check(condition, current: current, location: location(of: key))
            let g = s.nextGeneration
            s.nextGeneration += 1
            s.objects[key] = Entry(bytes: bytes, generation: g)
            return ObjectVersion("g\(g)")
        }
    }

    @discardableResult
    public func delete(_ key: String, condition: WriteCondition) async throws -> Bool {
        try state.withLock { (s: inout State) throws(VersionMismatchError) -> Bool in
            let current = s.objects[key].map { ObjectVersion("g\($0.generation)") }
            try Self.check(condition, current: current, location: location(of: key))
            return s.objects.removeValue(forKey: key) != nil
        }
    }

    public func list(prefix: String, startAfter: String?, limit: Int) async throws -> ObjectListing {
        let keys = state.withLock { s in
            s.objects.keys.filter { k in
                k.hasPrefix(prefix) && (startAfter.map { $0.utf8.lexicographicallyPrecedes(k.utf8) } ?? true)
            }
        }
        let sorted = keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        let page = Array(sorted.prefix(max(limit, 1)))
        return ObjectListing(keys: page, nextStartAfter: sorted.count > page.count ? page.last : nil)
    }

    public func location(of key: String) -> String { "memory:\(key)" }

    static func check(_ condition: WriteCondition, current: ObjectVersion?, location: String)
        throws(VersionMismatchError)
    {
        switch condition {
        case .unconditional: return
        case .mustNotExist:
            if let current {
                throw VersionMismatchError(location: location, expected: "no object, found \(current)")
            }
        case .mustMatch(let v):
            if current != v { throw VersionMismatchError(location: location, expected: v.rawValue) }
        }
    }
}

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

    public func release(_ lease: Lease) async throws {
        // Never releases a lock that another operation holds now: only this operation's turn.
        if let entry = held.withLock({ $0.removeValue(forKey: lease.operationID) }) {
            turns.give(entry.name, entry.turn)
        }
    }
}
