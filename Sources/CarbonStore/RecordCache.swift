import CarbonFormat
import CarbonModel

/// A bounded cache of decoded user records, keyed by storage key and checked against the storage's
/// version before every use (`ObjectStorage.getIfChanged`), so that a read of an unchanged user
/// costs a version check instead of a read and a decode, and an update a frame instead of a file.
///
/// An entry is only ever used after the storage has said that the object still has the entry's
/// version, so a record is never served after a newer write, least of all one acknowledged to this
/// process. Shared by the copies of one `Store`; least recently used entries go first when the
/// estimated memory passes the limit.
final class RecordCache: Sendable {
    struct Entry: Sendable {
        /// The storage's version of the object the record was decoded from.
        var version: ObjectVersion
        var record: UserRecord
        var layout: FileLayout
        /// The object's bytes up to `layout.validLength`, for storages that cannot append in place
        /// (the engine then writes them back with the new frame); nil otherwise.
        var bytes: [UInt8]?
        /// How many times frames appended by other writers were applied to this record since the
        /// file was last read whole (`Store.load`).
        var appliedTails = 0

        /// Estimated memory: a decoded record takes a few times its payloads, and an item takes
        /// 16 to about 200 bytes however few it takes in the file (docs/FORMAT.md, section 8).
        var cost: Int {
            1024 + layout.decodedSize * 3 + (layout.itemCountIsKnown ? layout.itemCount * 48 : 0)
                + (bytes?.count ?? 0)
        }
    }

    private struct State {
        var entries: [String: (entry: Entry, tick: UInt64)] = [:]
        var tick: UInt64 = 0
        var cost = 0
    }

    private let state = Locked(State())

    init() {}

    func entry(_ key: String) -> Entry? {
        state.withLock { s in
            guard let found = s.entries[key] else { return nil }
            s.tick += 1
            s.entries[key] = (found.entry, s.tick)
            return found.entry
        }
    }

    /// Gives `key`'s entry the version `new` if its version is still `old` (the same content, named
    /// with more: a file's change time).
    func replaceVersion(of key: String, from old: ObjectVersion, to new: ObjectVersion) {
        state.withLock { s in
            guard var found = s.entries[key], found.entry.version == old else { return }
            found.entry.version = new
            s.entries[key] = found
        }
    }

    /// Keeps `entry`, then drops least recently used entries until the estimate is within `limit`
    /// bytes (to three quarters of it, least recently used first). An entry larger than the limit
    /// is not kept.
    func store(_ key: String, _ entry: Entry, limit: Int) {
        let dropped: [Entry] = state.withLock { s in
            var dropped: [Entry] = []
            if let old = s.entries.removeValue(forKey: key) {
                s.cost -= old.entry.cost
                dropped.append(old.entry)
            }
            guard entry.cost <= limit else { return dropped }
            s.tick += 1
            s.entries[key] = (entry, s.tick)
            s.cost += entry.cost
            guard s.cost > limit else { return dropped }
            // Over the limit: drop the least recently used down to three quarters of it at once,
            // so that the sort is paid once per many stores.
            for (k, v) in s.entries.sorted(by: { $0.value.tick < $1.value.tick }) {
                if s.cost <= limit / 4 * 3 || k == key { break }
                s.entries[k] = nil
                s.cost -= v.entry.cost
                dropped.append(v.entry)
            }
            return dropped
        }
        // Records are released outside the lock.
        _ = dropped
    }

    func remove(_ key: String) {
        let old = state.withLock { s -> Entry? in
            guard let old = s.entries.removeValue(forKey: key) else { return nil }
            s.cost -= old.entry.cost
            return old.entry
        }
        _ = old
    }

    /// Entries and their estimated memory, for tests and metrics.
    var summary: (count: Int, cost: Int) { state.withLock { ($0.entries.count, $0.cost) } }
}
