import CarbonFormat
import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

/// `PathStorage.withSlowSync`, the test support's emulation of a volume whose syncs are slow (the
/// benchmarks' `MultiProcessUpdate --sync-delay`): each `fsync` and `fdatasync` takes at least the
/// delay longer, and the files it writes are those the plain storage writes.
@Suite struct SlowSyncStorageTests {
    static func txn(_ id: String, at ms: Int64) -> Transaction { SyncOffloadTests.txn(id, at: ms) }

    @Test func everySyncTakesTheDelayLongerAndTheFilesAreTheUsualOnes() async throws {
        let dir = try TemporaryDirectory("slow-sync")
        defer { dir.remove() }
        let delay = Duration.milliseconds(40)
        let slow = try PathStorage.withSlowSync(root: dir.path, delay: delay)
        var options = StoreOptions()
        options.groupCommit = false
        let store = Store(storage: slow, locks: FileLockService(storage: slow), options: options)
        let clock = ContinuousClock()

        // A new user: a snapshot written to a temporary file, fsynced, renamed, and its folder
        // fsynced (and the folders made for it): at least two syncs.
        var start = clock.now
        try await store.update("amy") { try $0.upsert(Self.txn("first", at: 1_900_000_000_000)) }
        #expect(clock.now - start >= delay * 2)

        // An appended frame: one fdatasync.
        start = clock.now
        try await store.update("amy") { try $0.upsert(Self.txn("second", at: 1_900_000_000_001)) }
        #expect(clock.now - start >= delay)

        // Read back through a plain storage: both transactions, the second one in a frame.
        let plain = try PathStorage(root: dir.path)
        let reader = Store(storage: plain, locks: FileLockService(storage: plain))
        let record = try await reader.get("amy")
        #expect(record.transaction(id: "first") == Self.txn("first", at: 1_900_000_000_000))
        #expect(record.transaction(id: "second") == Self.txn("second", at: 1_900_000_000_001))
        let path = plain.location(of: try reader.keys.key(for: "amy"))
        let bytes = try #require(FileManager.default.contents(atPath: path))
        #expect(try RecordCodec().decodeFile([UInt8](bytes)).layout.frameCount == 1)
    }
}
