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
