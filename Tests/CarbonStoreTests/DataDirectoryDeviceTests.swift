import CarbonModel
import CarbonStore
import CarbonStoreTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A data directory whose path leads to another file system than when the storage was opened (a
/// volume mounted over it, or unmounted from under it) is neither read nor written: the writes
/// would land where the other processes do not look. Here the path is a symbolic link pointed at a
/// folder on another device (`/dev/shm` against the test's temporary folder), which is what a
/// mount does to the path without needing the right to mount.
@Suite struct DataDirectoryDeviceTests {
    static func device(_ path: String) -> dev_t? {
        var st = stat()
        return stat(path, &st) == 0 ? st.st_dev : nil
    }

    static func txn(_ id: String) -> Transaction {
        Transaction(
            id: id, time: Timestamp(millisecondsSince1970: 1_700_000_000_000),
            amount: Money(minorUnits: 100, currency: CurrencyCode("EUR")!))
    }

    @Test(arguments: ["local", "none"])
    func aDataDirectoryOnAnotherDeviceIsRefusedUntilItIsBack(locking: String) async throws {
        let dir = try TemporaryDirectory("data-device")
        defer { dir.remove() }
        let other = "/dev/shm/carbonstore-data-device-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: other) }
        guard let here = Self.device(dir.path), let there = Self.device(other), here != there else {
            // Both on one device: nothing to tell apart on this machine.
            return
        }
        let volume = dir.path + "/volume"
        try FileManager.default.createDirectory(atPath: volume, withIntermediateDirectories: true)
        let link = dir.path + "/data"
        #expect(symlink(volume, link) == 0)
        let store = try await StoreFactory().makeStore("path:\(link)?locking=\(locking)")
        try await store.update("alice") { try $0.upsert(Self.txn("t1")) }

        // The path now leads to another device: every operation is refused, nothing is made there.
        #expect(unlink(link) == 0 && symlink(other, link) == 0)
        func isChanged(_ error: any Error) -> Bool {
            guard let e = error as? DataDirectoryChangedError else { return false }
            return e.path == link && e.kind == .storageFailure
                && e.description.contains("restart the process")
        }
        await #expect(
            performing: { try await store.update("alice") { try $0.upsert(Self.txn("t2")) } },
            throws: isChanged)
        await #expect(
            performing: { try await store.update("bob") { try $0.upsert(Self.txn("t1")) } }, throws: isChanged
        )
        await #expect(performing: { try await store.read("alice") }, throws: isChanged)
        await #expect(performing: { try await store.delete("alice") }, throws: isChanged)
        await #expect(performing: { try await store.listUsers(after: nil, limit: 10) }, throws: isChanged)
        await #expect(performing: { try await store.verify() }, throws: isChanged)
        await #expect(performing: { try await store.checkReachable() }, throws: isChanged)
        #expect(try FileManager.default.contentsOfDirectory(atPath: other).isEmpty)

        // Back on its device, the directory is used again; nothing was lost or added meanwhile.
        #expect(unlink(link) == 0 && symlink(volume, link) == 0)
        let done = try await store.update("alice") { try $0.upsert(Self.txn("t3")) }
        #expect(done.record.transactions.map(\.id) == ["t1", "t3"])
        #expect(try await store.listUsers(after: nil, limit: 10).userIDs == ["alice"])
        try await store.checkReachable()

        // A store opened for reading follows the path wherever it leads.
        var readOnly = StoreOptions()
        readOnly.readOnly = true
        let reader = try await StoreFactory(options: readOnly).makeStore("path:\(link)")
        #expect(unlink(link) == 0 && symlink(other, link) == 0)
        #expect(try await reader.read("alice") == nil)
    }
}
