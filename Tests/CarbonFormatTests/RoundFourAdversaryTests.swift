import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonFormat

/// Attacks on this round's codec changes: footprint transaction ids shared with their
/// transactions' strings, the processor's CRC-32C instruction, the start-up log's format line, and
/// the test support that repairs checksums for the fuzzer.
@Suite struct RoundFourAdversaryTests {
    static let codecs: [(String, RecordCodec)] = [
        ("none", RecordCodec(options: .init(compression: .none))),
        ("zlib", RecordCodec(options: .init(compression: .zlib(level: 9), compressionThreshold: 0))),
        ("zstd", RecordCodec(options: .init(compression: .zstd(level: 3), compressionThreshold: 0))),
        ("default", RecordCodec()),
    ]

    /// Every footprint's transaction id decodes to exactly the bytes written (String's `==` holds
    /// canonically equivalent strings equal, so bytes are compared).
    static func expectByteExact(
        _ decoded: UserRecord, _ record: UserRecord, _ what: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(decoded == record, "\(what)", sourceLocation: sourceLocation)
        let got = decoded.footprints.array.map { $0.transactionID.map { Array($0.utf8) } }
        let want = record.footprints.array.map { $0.transactionID.map { Array($0.utf8) } }
        #expect(
            got == want, "\(what): footprint transaction ids are not byte-exact",
            sourceLocation: sourceLocation)
        let gotT = decoded.transactions.array.map { Array($0.id.utf8) }
        let wantT = record.transactions.array.map { Array($0.id.utf8) }
        #expect(gotT == wantT, "\(what): transaction ids are not byte-exact", sourceLocation: sourceLocation)
    }

    // MARK: 1. Shared footprint transaction ids

    @Test func canonicallyEquivalentIDsAreNeverShared() throws {
        // NFC and NFD spellings of the same text, short (small strings) and long.
        let pairs: [(String, String)] = [
            ("caf\u{E9}", "cafe\u{301}"),
            ("transaction-caf\u{E9}-of-a-long-name-0001", "transaction-cafe\u{301}-of-a-long-name-0001"),
            ("\u{212B}", "\u{C5}"),  // ANGSTROM SIGN, LATIN CAPITAL A WITH RING
            (
                "\u{1E9B}\u{323}-long-enough-to-be-a-heap-string",
                "\u{17F}\u{323}\u{307}-long-enough-to-be-a-heap-string"
            ),
        ]
        for (nfc, nfd) in pairs {
            #expect(
                nfc == nfd && Array(nfc.utf8) != Array(nfd.utf8),
                "the pair must be equivalent, not equal bytes")
            var record = UserRecord(userID: "u", createdAt: Timestamp(millisecondsSince1970: 0))
            record.transactions = ItemList([
                SharedIDTests.transaction(nfc, 1), SharedIDTests.transaction("other", 2),
            ])
            // The other spelling at `next`, at `next + 1`, and the transaction's own spelling after.
            record.footprints = ItemList([
                SharedIDTests.footprint("f0", of: nfd), SharedIDTests.footprint("f1", of: nfc),
                SharedIDTests.footprint("f2", of: nfd),
                SharedIDTests.footprint("f3", of: "other"), SharedIDTests.footprint("f4", of: nfd),
            ])
            for (name, codec) in Self.codecs {
                Self.expectByteExact(try codec.decode(codec.encode(record)), record, "\(name) \(nfc)")
                Self.expectByteExact(
                    try codec.decode(codec.encodeVersion1(record)), record, "\(name) v1 \(nfc)")
            }
            // And the other way round: the transaction has the decomposed spelling.
            record.transactions = ItemList([
                SharedIDTests.transaction(nfd, 1), SharedIDTests.transaction("other", 2),
            ])
            for (name, codec) in Self.codecs {
                Self.expectByteExact(try codec.decode(codec.encode(record)), record, "\(name) \(nfd)")
            }
        }
    }

    @Test func emptyAndPrefixIDsDecodeAsWritten() throws {
        var record = UserRecord(userID: "u", createdAt: Timestamp(millisecondsSince1970: 0))
        record.transactions = ItemList([
            SharedIDTests.transaction("", 1), SharedIDTests.transaction("a", 2),
            SharedIDTests.transaction("ab", 3),
            SharedIDTests.transaction(String(repeating: "x", count: 15), 4),
            SharedIDTests.transaction(String(repeating: "x", count: 16), 5),
        ])
        let refs: [String?] = [
            "", "", nil, "a", "ab", "a", "", String(repeating: "x", count: 16),
            String(repeating: "x", count: 15),
            String(repeating: "x", count: 14), "abc", nil, "",
        ]
        record.footprints = ItemList(
            refs.enumerated().map { SharedIDTests.footprint("f\($0.offset)", of: $0.element) })
        for (name, codec) in Self.codecs {
            Self.expectByteExact(try codec.decode(codec.encode(record)), record, name)
        }
    }

    /// Random records whose footprints point at random ids of a pool of look-alike strings (NFC and
    /// NFD twins, prefixes, empty, small and large), in and out of order.
    @Test func randomLookAlikeIDsRoundTripWithEveryCodec() throws {
        let stems = [
            "", "t", "caf\u{E9}", "cafe\u{301}", "caf", "transaction-\u{E9}-0000000000000001",
            "transaction-e\u{301}-0000000000000001", "transaction-e-000000000000000", "\u{1F600}", "x",
        ]
        var rng = SeededRandom(seed: 0xADF4)
        for round in 0..<200 {
            var pool: [String] = []
            for stem in stems.shuffled(using: &rng) where Bool.random(using: &rng) || pool.count < 2 {
                pool.append(
                    stem
                        + (Bool.random(using: &rng)
                            ? "" : String(repeating: "-", count: Int.random(in: 0...20, using: &rng))))
            }
            let ids = Array(Set(pool)).sorted().shuffled(using: &rng)
            var record = UserRecord(userID: "u\(round)", createdAt: Timestamp(millisecondsSince1970: 0))
            record.transactions = ItemList(
                ids.enumerated().map { SharedIDTests.transaction($0.element, Int64($0.offset)) })
            let lookAlikes = pool + stems
            var footprints: [Footprint] = []
            var cursor = 0
            for i in 0..<Int.random(in: 0...30, using: &rng) {
                let ref: String?
                switch Int.random(in: 0..<5, using: &rng) {
                case 0: ref = nil
                case 1, 2:
                    ref = ids.isEmpty ? nil : ids[cursor % ids.count]
                    cursor += Int.random(in: 1...2, using: &rng)
                default: ref = lookAlikes.randomElement(using: &rng)
                }
                footprints.append(SharedIDTests.footprint("f\(i)", of: ref))
            }
            record.footprints = ItemList(footprints)
            for (name, codec) in Self.codecs {
                Self.expectByteExact(try codec.decode(codec.encode(record)), record, "round \(round) \(name)")
            }
        }
    }

    @Test func generatedRecordsRoundTripWithEveryCodec() throws {
        for seed: UInt64 in 1...150 {
            let record = RecordGenerator.record(seed: seed, maxItems: 40)
            for (name, codec) in Self.codecs {
                Self.expectByteExact(try codec.decode(codec.encode(record)), record, "seed \(seed) \(name)")
            }
            let v1 = RecordCodec(options: .init(compression: .none))
            Self.expectByteExact(try v1.decode(v1.encodeVersion1(record)), record, "seed \(seed) v1")
        }
    }

    /// The footprints section first in the file (readers take sections in any order): nothing is
    /// decoded yet to share from, and the ids are still exact.
    @Test func footprintsBeforeTransactionsDecodeAsWritten() throws {
        var record = UserRecord(userID: "u", createdAt: Timestamp(millisecondsSince1970: 0))
        let t = (0..<4).map { SharedIDTests.transaction("transaction-number-\($0)-of-four", Int64($0)) }
        record.transactions = ItemList(t)
        record.footprints = ItemList([
            SharedIDTests.footprint("a", of: t[0].id), SharedIDTests.footprint("b", of: t[1].id),
            SharedIDTests.footprint("c", of: "zz"),
            SharedIDTests.footprint("d", of: t[3].id),
        ])
        for version: UInt16 in [1, 2] {
            let codec = RecordCodec(options: .init(compression: .none))
            let bytes = version == 1 ? codec.encodeVersion1(record) : codec.encode(record)
            let sections = try RecordCodec.layout(of: bytes).sections
            #expect(sections.map(\.tag) == [SectionTag.transactions, SectionTag.footprints])
            let start = sections[0].offset
            func span(_ s: SectionInfo) -> [UInt8] {
                Array(bytes[s.offset..<(s.offset + 12 + s.storedLength)])
            }
            let end = sections[1].offset + 12 + sections[1].storedLength
            let reordered =
                Array(bytes[..<start]) + span(sections[1]) + span(sections[0]) + Array(bytes[end...])
            #expect(
                try RecordCodec.layout(of: reordered).sections.map(\.tag) == [
                    SectionTag.footprints, SectionTag.transactions,
                ])
            Self.expectByteExact(try codec.decode(reordered), record, "version \(version)")
        }
    }

    /// Where the only footprint's transaction id sits in an uncompressed version-1 file, and where
    /// the footprints section's payload ends.
    static func transactionIDSite(_ bytes: [UInt8], id: String) throws -> (at: Int, payloadEnd: Int) {
        let fp = try #require(
            try RecordCodec.layout(of: bytes).sections.first { $0.tag == SectionTag.footprints })
        let idBytes = Array(id.utf8)
        let at = try #require(
            (fp.offset..<(fp.offset + 8 + fp.storedLength - idBytes.count)).first {
                bytes[$0] == UInt8(idBytes.count + 1)
                    && Array(bytes[($0 + 1)...($0 + idBytes.count)]) == idBytes
            })
        return (at, fp.offset + 8 + fp.storedLength)
    }

    /// Hostile transaction ids fail with exactly the errors of the reader's `optionalString` (kind,
    /// offset, words), whether or not their bytes start like the transaction's id.
    @Test func hostileTransactionIDsGiveTheOldErrors() throws {
        let id = "shared-transaction-identifier"
        var record = UserRecord(userID: "u", createdAt: Timestamp(millisecondsSince1970: 0))
        record.transactions = ItemList([
            SharedIDTests.transaction(id, 1), SharedIDTests.transaction("second", 2),
        ])
        record.footprints = ItemList([SharedIDTests.footprint("f", of: id)])
        let bytes = RecordCodec(options: .init(compression: .none)).encodeVersion1(record)
        let (at, payloadEnd) = try Self.transactionIDSite(bytes, id: id)
        let left = payloadEnd - (at + 1)

        // Longer than the bytes left.
        for claimed in [left + 1, left + 2, 127] where claimed <= 126 {
            var b = bytes
            b[at] = UInt8(claimed + 1)
            let e = try #require(Craft.error(repairingChecksums(b)))
            #expect(e.kind == .lengthBeyondEnd)
            #expect(e.offset == at)
            #expect(
                e.detail == "footprint transaction id length \(claimed) exceeds the \(left) bytes left",
                "\(e)")
        }
        // The transaction's bytes with the last one made invalid UTF-8, and a continuation byte.
        for bad: UInt8 in [0xFF, 0x80, 0xC3] {
            var b = bytes
            b[at + id.utf8.count] = bad
            let e = try #require(Craft.error(repairingChecksums(b)))
            #expect(e.kind == .invalidValue)
            #expect(e.offset == at + 1)
            #expect(e.detail == "footprint transaction id is not valid UTF-8", "\(e)")
        }
        // One byte shorter: a prefix of the transaction's id, then the next column is off by one.
        var shorter = bytes
        shorter[at] = UInt8(id.utf8.count)
        let decodedShorter = Craft.decode(repairingChecksums(shorter))
        if case .success(let r) = decodedShorter {
            #expect(r.footprints.array.first?.transactionID == String(id.dropLast()))
        }
        try Self.expectPythonAgrees(
            [bytes]
                + [left + 1].map {
                    var b = bytes; b[at] = UInt8($0 + 1); return repairingChecksums(b)
                }
                + [0xFF as UInt8].map {
                    var b = bytes; b[at + id.utf8.count] = $0; return repairingChecksums(b)
                })
    }

    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("scripts/read_cstore.py").path

    /// The independent Python reader refuses each file with the engine's kind and offset (or reads it).
    static func expectPythonAgrees(_ files: [[UInt8]], sourceLocation: SourceLocation = #_sourceLocation)
        throws
    {
        let dir = try TemporaryDirectory("round-four-python")
        defer { dir.remove() }
        for (n, bytes) in files.enumerated() {
            let path = dir.path + "/f\(n).cstore"
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["python3", script, path]
            let err = Pipe()
            p.standardOutput = Pipe()
            p.standardError = err
            try p.run()
            let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            switch Craft.decode(bytes) {
            case .success:
                #expect(p.terminationStatus == 0, "file \(n): \(stderr)", sourceLocation: sourceLocation)
            case .failure(let e):
                #expect(
                    stderr.hasPrefix("read_cstore: \(e.kind.rawValue) at offset \(e.offset)"),
                    "file \(n): engine \(e), reader \(stderr)", sourceLocation: sourceLocation)
            }
        }
    }

    // MARK: 2. CRC-32C with the processor's instruction

    @Test func theInstructionAgreesWithTheBitwiseReferenceOnMegabytesAndSplits() {
        var rng = SeededRandom(seed: 0xC2C)
        let count = 3 << 20
        var data = [UInt8](repeating: 0, count: count + 16)
        for i in data.indices { data[i] = UInt8.random(in: 0...255, using: &rng) }
        data.withUnsafeBytes { all in
            for shift in [0, 1, 3, 7, 9] {
                let part = UnsafeRawBufferPointer(rebasing: all[shift..<(shift + count)])
                let reference = CRC32CTests.reference(Array(part))
                #expect(CRC32C.checksum(part) == reference, "shift \(shift)")
                #expect(~CRC32C.software(~0, part) == reference, "tables, shift \(shift)")
                // Continued across random split points (unaligned pieces of every size).
                var crc: UInt32 = 0
                var pos = 0
                while pos < part.count {
                    let n = min(part.count - pos, Int.random(in: 0...70_000, using: &rng))
                    crc = CRC32C.update(crc, with: UnsafeRawBufferPointer(rebasing: part[pos..<(pos + n)]))
                    pos += n
                }
                #expect(crc == reference, "split, shift \(shift)")
            }
        }
    }

    @Test func emptyAndNilBuffersLeaveTheCRC() {
        for seed: UInt32 in [0, 1, 0xFFFF_FFFF, 0xE306_9283] {
            #expect(CRC32C.update(seed, with: UnsafeRawBufferPointer(start: nil, count: 0)) == seed)
            #expect(CRC32C.update(seed, with: [UInt8]()) == seed)
            #expect(CRC32C.raw(seed, UnsafeRawBufferPointer(start: nil, count: 0)) == seed)
            let one: [UInt8] = [0x42]
            one.withUnsafeBytes {
                #expect(CRC32C.raw(seed, UnsafeRawBufferPointer(rebasing: $0[1...])) == seed)
            }
        }
    }

    @Test func shortPiecesAtEveryAlignmentContinueExactly() {
        var rng = SeededRandom(seed: 77)
        let data = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let reference = CRC32CTests.reference(data)
        data.withUnsafeBytes { all in
            for piece in 1...17 {
                var crc: UInt32 = 0
                var pos = 0
                while pos < all.count {
                    let n = min(piece, all.count - pos)
                    crc = CRC32C.update(crc, with: UnsafeRawBufferPointer(rebasing: all[pos..<(pos + n)]))
                    pos += n
                }
                #expect(crc == reference, "pieces of \(piece)")
            }
        }
    }

    // MARK: 4. The start-up log's format line

    @Test func theFormatLineSaysWhatTheCodecWrites() throws {
        var record = RecordGenerator.workload(.w1, seed: 5)
        record.userID = "u"
        let cases: [(RecordCodec.Compression, UInt16, String)] = [
            (.zstd(level: 1), 3, "version 3 (zstd "),
            (.zstd(level: 0), 2, "version 2 (uncompressed)"),
            (.zlib(level: 1), 2, "version 2 (zlib level 1"),
            (.zlib(level: 0), 2, "version 2 (uncompressed)"),
            (.none, 2, "version 2 (uncompressed)"),
        ]
        for (compression, version, line) in cases {
            var codec = RecordCodec(options: .init(compression: compression))
            guard codec.zstd != nil || version != 3 else { continue }
            #expect(codec.writtenFormat.hasPrefix(line), "\(compression): \(codec.writtenFormat)")
            #expect(
                try RecordCodec.readHeader(codec.encode(record)).formatVersion == version, "\(compression)")
            codec.zstd = nil
            if case .zstd(let level) = compression, level != 0 {
                #expect(codec.writtenFormat.hasPrefix("version 2 (zlib level 1: libzstd.so.1 was not found"))
                #expect(try RecordCodec.readHeader(codec.encode(record)).formatVersion == 2)
            }
        }
        // Levels outside zstd's range are written (and said) clamped.
        for (asked, said) in [(-5, 1), (40, 19)] as [(Int32, Int32)] {
            let codec = RecordCodec(options: .init(compression: .zstd(level: asked)))
            guard codec.zstd != nil else { continue }
            #expect(codec.writtenFormat.hasSuffix("level \(said))"), "\(codec.writtenFormat)")
        }
    }

    // MARK: Test support: checksums repaired for the fuzzer

    /// `repairingChecksums` must find the sections and frames of the version-3 files that are now
    /// written by default (the fuzzer mutates them and repairs their CRCs to reach the parsers).
    @Test func checksumsAreRepairedInVersionThreeFiles() throws {
        var record = RecordGenerator.workload(.w1, seed: 9)
        record.userID = "u"
        let codec = RecordCodec(options: .init(compression: .zstd(level: 1), compressionThreshold: 0))
        guard codec.zstd != nil else { return }
        let bytes = codec.encode(record)
        #expect(bytes[8] == 3)
        let report = try RecordCodec.inspect(bytes)
        // Every stored CRC zeroed: repairing must give the file back.
        var zeroed = bytes
        zeroed.replaceSubrange((report.header.byteCount - 4)..<report.header.byteCount, with: [0, 0, 0, 0])
        for s in report.sections {
            let crcAt = s.offset + 8 + s.storedLength
            zeroed.replaceSubrange(crcAt..<(crcAt + 4), with: [0, 0, 0, 0])
        }
        #expect(repairingChecksums(zeroed) == bytes)
        #expect(repairingChecksums(bytes) == bytes)
    }
}
