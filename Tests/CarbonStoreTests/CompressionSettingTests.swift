import CarbonFormat
import CarbonModel
import CarbonStore
import CarbonStoreTestSupport
import Foundation
import Testing

/// The storage URI's `compression` key: which format version a store writes.
@Suite struct CompressionSettingTests {
    @Test func theKeyParsesAndABadValueSaysWhatIsAllowed() throws {
        #expect(try StorageURI("path:d").compression == nil)
        #expect(try StorageURI("path:d?compression=zstd").compression == .zstd(level: 1))
        #expect(try StorageURI("s3:my-bucket?locking=none&compression=zlib").compression == .zlib(level: 1))
        #expect(try StorageURI("memory:?compression=none").compression == RecordCodec.Compression.none)
        for bad in ["path:d?compression=gzip", "path:d?compression=ZSTD", "path:d?compression=zstd-3"] {
            let e = #expect(throws: InvalidStorageURIError.self, "\(bad)") { try StorageURI(bad) }
            #expect(e?.description.contains("'compression' is zstd") == true, "\(e?.description ?? "")")
            #expect(e?.description.contains("compression=zlib") == true)
        }
        #expect(throws: InvalidStorageURIError.self) { try StorageURI("path:d?compression=") }
    }

    /// The version of the one user file under `dir`.
    func fileVersion(_ dir: TemporaryDirectory) throws -> UInt16 {
        let files = dir.allFiles().filter { $0.hasSuffix(".cstore") }
        #expect(files.count == 1)
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: dir.path + "/" + files[0])))
        return try RecordCodec.readHeader(bytes).formatVersion
    }

    @Test func aStoreWritesWhatItsURISays() async throws {
        let record = RecordGenerator.workload(.w1, seed: 21)
        for (query, version) in [
            ("", UInt16(3)), ("?compression=zstd", 3), ("?compression=zlib", 2), ("?compression=none", 2),
        ] {
            let dir = try TemporaryDirectory("compression")
            defer { dir.remove() }
            let store = try await StoreFactory().makeStore("path:" + dir.path + query)
            try await store.update(record.userID) { $0 = record }
            #expect(try fileVersion(dir) == version, "\(query)")
            // Any store reads it back, whatever its own setting.
            let other = try await StoreFactory().makeStore("path:" + dir.path + "?compression=zlib&cache=0")
            let read = try #require(try await other.read(record.userID))
            #expect(read.transactions == record.transactions && read.footprints == record.footprints)
        }
    }
}
