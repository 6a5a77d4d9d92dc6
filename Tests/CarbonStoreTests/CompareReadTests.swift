import CarbonFormat
import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

#if canImport(Glibc)
    import Glibc
#endif

/// `PathStorage.compare`, the fence's look at a user file (and the version check's): it reads the
/// last frame's trailer and the bytes after the version's end in one read. Its answers must be those
/// of the reads made one after another (kept here as the reference) on every file and version:
/// frames or none, reserves, torn and damaged tails, someone else's frame, versions that do not
/// match, a size given smaller than the file, and versions that end past the largest file read.
@Suite struct CompareReadTests {
    typealias AppendVersion = PathStorage.AppendVersion

    /// The comparison as it was written first: the snapshot id, then the last frame's id, then the
    /// bytes after the end, each in a read of its own.
    static func reference(
        _ storage: PathStorage, _ fd: Int32, size: Int, with v: AppendVersion, quick: Bool
    ) throws -> PathStorage.ComparisonRead {
        let path = "reference"
        let changed = PathStorage.ComparisonRead(comparison: .changed, after: nil)
        guard size >= v.validLength, v.validLength >= FileLayout.fileIDOffset + 16 else { return changed }
        guard
            try storage.readExactly(fd, count: 16, at: FileLayout.fileIDOffset, path: path) == v.fileID.bytes
        else { return changed }
        if v.lastID != v.fileID {
            guard v.validLength >= FileLayout.frameTrailerLength,
                try storage.readExactly(
                    fd, count: 16, at: v.validLength - FileLayout.frameTrailerLength, path: path)
                    == v.lastID.bytes
            else { return changed }
        }
        if size == v.validLength { return .init(comparison: .same, after: nil) }
        if quick {
            let head = try storage.readExactly(
                fd, count: min(4, size - v.validLength), at: v.validLength, path: path)
            if head.count < 4 || !head.elementsEqual(RecordCodec.frameMarker.prefix(4)) {
                return .init(comparison: .same, after: nil)
            }
        }
        let after = try storage.readExactly(
            fd, count: min(size, storage.maximumFileSize) - v.validLength, at: v.validLength, path: path)
        if after.withUnsafeBytes({ RecordCodec.isReserve($0) }) {
            return .init(comparison: .same, after: nil)
        }
        if after.withUnsafeBytes({ storage.codec.startsWithFrame($0, chainedTo: v.lastID) }) {
            return .init(comparison: .changed, after: after)
        }
        let torn = after.withUnsafeBytes { RecordCodec.isOneTornAppend($0, at: v.validLength) }
        return .init(comparison: torn ? .sameWithTornTail : .sameWithDamagedTail, after: after)
    }

    static func txn(_ n: Int) -> Transaction {
        Transaction(
            id: "t-\(n)", time: Timestamp(millisecondsSince1970: 1_700_000_000_000 + Int64(n)),
            amount: Money(minorUnits: Int64(n), currency: CurrencyCode("EUR")!), merchant: "Shop \(n % 3)")
    }

    /// A snapshot followed by `frames` change frames: the bytes, and the version at each boundary
    /// (the snapshot's end, then each frame's), and one more frame chained to the last (another
    /// writer's append).
    static func file(frames: Int) throws -> (bytes: [UInt8], versions: [AppendVersion], next: [UInt8]) {
        let codec = RecordCodec()
        var record = UserRecord(userID: "kim", revision: 1, createdAt: Timestamp(millisecondsSince1970: 0))
        for n in 0..<5 { try record.upsert(txn(n)) }
        var (bytes, layout) = try codec.encodeSnapshot(record, fileID: .random())
        var versions = [try #require(AppendVersion(layout))]
        func frame() throws -> ChangeFrame {
            var next = record
            try next.upsert(txn(100 + next.transactions.count))
            next.revision += 1
            let frame = try #require(
                codec.encodeChange(from: record, to: next, appendingTo: layout, id: .random()))
            record = next
            return frame
        }
        for _ in 0..<frames {
            let f = try frame()
            bytes += f.bytes
            layout = layout.appending(f)
            versions.append(try #require(AppendVersion(layout)))
        }
        return (bytes, versions, try frame().bytes)
    }

    @Test func theOneReadAnswersAsTheReadsOneAfterAnother() throws {
        let dir = try TemporaryDirectory("compare-read")
        defer { dir.remove() }
        var rng = SeededRandom(seed: 0xC0_4FA2)
        var cases = 0
        var differences: [String] = []
        for frames in 0..<4 {
            let (base, versions, next) = try Self.file(frames: frames)
            // What follows the content: nothing, a reserve, someone's frame, a torn append, damage.
            let tails: [(String, [UInt8])] = [
                ("nothing", []), ("a reserve", [UInt8](repeating: 0, count: 3411)),
                ("a short reserve", [0, 0]), ("a frame", next),
                ("a frame and a reserve", next + [UInt8](repeating: 0, count: 700)),
                ("a torn append", Array(next.prefix(next.count / 2))), ("a torn head", Array(next.prefix(3))),
                (
                    "damage",
                    [0x89, 0x43, 0x46, 0x52, 0xFF, 0xFF, 0xFF, 0x7F] + [UInt8](repeating: 0xAB, count: 40)
                ),
                ("garbage", (0..<64).map { _ in UInt8.random(in: 0...255, using: &rng) }),
            ]
            for (label, tail) in tails {
                let bytes = base + tail
                let file = dir.path + "/f-\(frames)-\(cases)"
                #expect(FileManager.default.createFile(atPath: file, contents: Data(bytes)))
                let fd = open(file, O_RDONLY | O_CLOEXEC)
                defer { close(fd) }
                for v in versions {
                    var wrongFile = v
                    wrongFile.fileID = .random()
                    var wrongLast = v
                    wrongLast.lastID = .random()
                    var shorter = v
                    shorter.validLength -= 1
                    var longer = v
                    longer.validLength += 1
                    for version in [v, wrongFile, wrongLast, shorter, longer] {
                        for size in Set([
                            bytes.count, base.count, version.validLength, max(0, bytes.count - 1),
                        ]) {
                            // The largest file read: no limit, or ending before the file, the
                            // size given or the version's end.
                            for limit in Set([
                                RecordCodec.Limits().maxFileSize, bytes.count - 10, version.validLength - 25,
                                version.validLength - 5, version.validLength + 2,
                            ]) where limit > 64 {
                                let storage = try PathStorage(root: dir.path, maximumFileSize: limit)
                                for quick in [false, true] {
                                    cases += 1
                                    let got = try storage.compare(
                                        fd, size: size, with: version, path: file, quick: quick)
                                    let want = try Self.reference(
                                        storage, fd, size: size, with: version, quick: quick)
                                    if got.comparison != want.comparison || got.after != want.after {
                                        differences.append(
                                            "\(frames) frames, \(label), size \(size) of \(bytes.count), valid \(version.validLength), limit \(limit), quick \(quick): \(got.comparison) against \(want.comparison)"
                                        )
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        #expect(cases > 5_000)
        #expect(differences.count == 0, "\(differences.count) differences, first: \(differences.prefix(3))")
    }
}
