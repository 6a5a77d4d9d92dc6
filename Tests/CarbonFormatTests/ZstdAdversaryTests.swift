import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonFormat

/// Hand-made zstd frames (RFC 8878 §3.1.1) for the adversary tests: a header, then blocks.
enum HostileFrame {
    static let magic: [UInt8] = [0x28, 0xB5, 0x2F, 0xFD]

    /// A block header: bit 0 last block, bits 1-2 the type (0 raw, 1 RLE, 2 compressed,
    /// 3 reserved), bits 3-23 the size.
    static func block(last: Bool, type: UInt32, size: UInt32) -> [UInt8] {
        let v = (last ? 1 : 0) | type << 1 | size << 3
        return [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF)]
    }

    /// A raw block holding `bytes`.
    static func rawBlock(_ bytes: [UInt8], last: Bool = true) -> [UInt8] {
        block(last: last, type: 0, size: UInt32(bytes.count)) + bytes
    }

    /// A single-segment header (descriptor bit 5) with a 2-byte content size (`size` − 256,
    /// 256 ≤ size < 65,792), the descriptor's other bits from `extra`.
    static func singleSegment2(size: Int, extra: UInt8 = 0) -> [UInt8] {
        let v = UInt16(size - 256)
        return magic + [0x60 | extra, UInt8(v & 0xFF), UInt8(v >> 8)]
    }

    /// A single-segment header with a 1-byte content size (< 256).
    static func singleSegment1(size: Int, extra: UInt8 = 0) -> [UInt8] {
        magic + [0x20 | extra, UInt8(size)]
    }

    /// A header with a window descriptor and no content size.
    static func windowed(_ windowDescriptor: UInt8, extra: UInt8 = 0) -> [UInt8] {
        magic + [extra, windowDescriptor]
    }
}

/// An adversary's view of format version 3 (zstd sections, docs/FORMAT.md §4 "zstd (bit 1,
/// version 3)"): hostile frames are refused with the documented kind at the documented offset, by
/// the engine and by the independent Python reader alike; the check order is the document's;
/// contexts of the pool survive errors and concurrency.
@Suite(.serialized) struct ZstdAdversaryTests {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("scripts/read_cstore.py").path

    let tx = Craft.transactionsPayload()

    /// A version-3 file whose only section is a transactions section with `body` and `flags`.
    func file(_ body: [UInt8], flags: UInt16 = RecordCodec.zstdFlag, version: UInt16 = 3) -> [UInt8] {
        Craft.file([Craft.section(tag: SectionTag.transactions, flags: flags, body: body)], version: version)
    }

    /// Where the body of the only section of such a file starts (its frame starts 4 bytes later).
    var bodyOffset: Int { Craft.header(sectionCount: 1, version: 3).count + 8 }

    /// The Python reader's verdict: nil when it reads the file, else the kind and offset it prints.
    func python(_ bytes: [UInt8], in dir: TemporaryDirectory, name: String) throws -> (
        kind: String, offset: Int
    )? {
        let reading = try PythonReader.read(bytes, script: Self.script, in: dir, name: name)
        let stderr = reading.stderr
        if reading.status == 0 { return nil }
        #expect(reading.status == 5, "\(name): \(stderr)")
        #expect(stderr.split(separator: "\n").count == 1, "\(name): \(stderr)")
        // "read_cstore: <kind> at offset <n>..."
        let words = stderr.split(separator: " ")
        guard words.count >= 5, words[0] == "read_cstore:", words[2] == "at", words[3] == "offset",
            let offset = Int(words[4].prefix { $0.isNumber })
        else {
            Issue.record("\(name): unexpected output \(stderr)")
            return nil
        }
        return (String(words[1]), offset)
    }

    /// The engine refuses `bytes` with `kind` at `offset`, and the Python reader says the same.
    func expectRefused(
        _ bytes: [UInt8], _ kind: FormatError.Kind, at offset: Int, in dir: TemporaryDirectory,
        _ name: String, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let e = Craft.error(bytes, sourceLocation: sourceLocation)
        #expect(
            e?.kind == kind && e?.offset == offset, "\(name): \(String(describing: e))",
            sourceLocation: sourceLocation)
        let py = try python(bytes, in: dir, name: name)
        #expect(
            py?.kind == kind.rawValue && py?.offset == offset,
            "\(name): Python says \(String(describing: py))",
            sourceLocation: sourceLocation)
    }

    /// The engine and the Python reader agree on `bytes` (both read it, or both refuse it with the
    /// same kind at the same offset); returns the engine's error.
    @discardableResult
    func expectAgreement(
        _ bytes: [UInt8], in dir: TemporaryDirectory, _ name: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> FormatError? {
        var engine: FormatError?
        do { _ = try RecordCodec().decodeFile(bytes) } catch { engine = error }
        let py = try python(bytes, in: dir, name: name)
        #expect(
            engine?.kind.rawValue == py?.kind && engine?.offset == py?.offset,
            "\(name): engine \(String(describing: engine)), Python \(String(describing: py))",
            sourceLocation: sourceLocation)
        return engine
    }

    // MARK: 1. Hostile frames

    @Test func hostileFramesAreRefusedAtTheFrameByBothReaders() throws {
        let dir = try TemporaryDirectory("zstd-adversary")
        defer { dir.remove() }
        let n = tx.count
        let raw = Craft.le32(UInt32(n))
        let frameAt = bodyOffset + 4
        // The control: a hand-made frame of the payload is read by both.
        #expect(try expectAgreement(file(raw + Craft.handFrame(tx)), in: dir, "control") == nil)

        // A window descriptor beyond what any decoder supports (exponent 31: 2^41 bytes).
        try expectRefused(
            file(raw + HostileFrame.windowed(0xF8) + HostileFrame.rawBlock(tx)), .decompressionFailed,
            at: frameAt, in: dir, "window-2^41")
        // A 2 GiB window (the largest libzstd can name): both readers give the same answer.
        let big = try expectAgreement(
            file(raw + HostileFrame.windowed(0xA8) + HostileFrame.rawBlock(tx)), in: dir, "window-2^31")
        #expect(big == nil || (big?.kind == .decompressionFailed && big?.offset == frameAt))

        // A content checksum that does not match (the same frame without it is read).
        try expectRefused(
            file(
                raw + HostileFrame.singleSegment1(size: n, extra: 0x04) + HostileFrame.rawBlock(tx) + [
                    1, 2, 3, 4,
                ]),
            .decompressionFailed, at: frameAt, in: dir, "bad-checksum")
        #expect(
            try expectAgreement(
                file(raw + HostileFrame.singleSegment1(size: n) + HostileFrame.rawBlock(tx)), in: dir,
                "no-checksum")
                == nil)

        // RLE blocks that expand far beyond the declared length: 8 blocks of 128 KiB from 38 bytes.
        var bomb = HostileFrame.windowed(0x38)  // window 2^17
        for i in 0..<8 { bomb += HostileFrame.block(last: i == 7, type: 1, size: 128 << 10) + [0x41] }
        try expectRefused(file(raw + bomb), .decompressionFailed, at: frameAt, in: dir, "rle-bomb")
        // The same blocks under a header that declares the declared length (4,000 bytes).
        var lying = HostileFrame.singleSegment2(size: 4000)
        for i in 0..<8 { lying += HostileFrame.block(last: i == 7, type: 1, size: 128 << 10) + [0x41] }
        try expectRefused(
            file(Craft.le32(4000) + lying), .decompressionFailed, at: frameAt, in: dir, "rle-bomb-declared")
        // A header declaring 1 MiB for a section of n bytes.
        try expectRefused(
            file(raw + HostileFrame.magic + [0xA0, 0, 0, 0x10, 0] + HostileFrame.rawBlock(tx)),
            .decompressionFailed, at: frameAt, in: dir, "declares-1MiB")

        // The header says n bytes, the blocks give n − 1 (or 42 bytes under a header and raw length of 41).
        try expectRefused(
            file(raw + HostileFrame.singleSegment1(size: n) + HostileFrame.rawBlock(Array(tx.dropLast()))),
            .decompressionFailed, at: frameAt, in: dir, "blocks-short")
        try expectRefused(
            file(
                Craft.le32(41) + HostileFrame.singleSegment1(size: 41)
                    + HostileFrame.rawBlock(Array(tx.prefix(42)))),
            .decompressionFailed, at: frameAt, in: dir, "blocks-long")

        // The header's reserved bit (bit 3 of the descriptor).
        try expectRefused(
            file(raw + HostileFrame.singleSegment1(size: n, extra: 0x08) + HostileFrame.rawBlock(tx)),
            .decompressionFailed, at: frameAt, in: dir, "reserved-bit")
        // The unused bit (bit 4): both readers agree whatever libzstd makes of it.
        try expectAgreement(
            file(raw + HostileFrame.singleSegment1(size: n, extra: 0x10) + HostileFrame.rawBlock(tx)),
            in: dir,
            "unused-bit")

        // Frames of no content, under a raw length of 1.
        try expectRefused(
            file(Craft.le32(1) + HostileFrame.singleSegment1(size: 0) + HostileFrame.rawBlock([])),
            .decompressionFailed, at: frameAt, in: dir, "empty-declared")
        try expectRefused(
            file(Craft.le32(1) + HostileFrame.windowed(0) + HostileFrame.rawBlock([])),
            .decompressionFailed, at: frameAt, in: dir, "empty-undeclared")

        // The extent is right but the compressed block is garbage.
        let garbage = [UInt8](repeating: 0xFF, count: 24)
        try expectRefused(
            file(
                raw + HostileFrame.singleSegment1(size: n) + HostileFrame.block(last: true, type: 2, size: 24)
                    + garbage),
            .decompressionFailed, at: frameAt, in: dir, "corrupt-block")
        // A block of the reserved type, and a block longer than the body.
        try expectRefused(
            file(
                raw + HostileFrame.singleSegment1(size: n)
                    + HostileFrame.block(last: true, type: 3, size: UInt32(n)) + tx),
            .decompressionFailed, at: frameAt, in: dir, "reserved-block")
        try expectRefused(
            file(
                raw + HostileFrame.singleSegment1(size: n)
                    + HostileFrame.block(last: true, type: 0, size: UInt32(n + 10)) + tx),
            .decompressionFailed, at: frameAt, in: dir, "block-beyond-body")
        // No last block: the frame runs off the end of the body.
        try expectRefused(
            file(raw + HostileFrame.singleSegment1(size: n) + HostileFrame.rawBlock(tx, last: false)),
            .decompressionFailed, at: frameAt, in: dir, "no-last-block")

        // A skippable frame after the real one: trailing bytes at its first byte.
        let real = Craft.handFrame(tx)
        let skippable: [UInt8] = [0x50, 0x2A, 0x4D, 0x18, 4, 0, 0, 0, 1, 2, 3, 4]
        try expectRefused(
            file(raw + real + skippable), .trailingBytes, at: frameAt + real.count, in: dir, "skippable-after"
        )
        // A legacy frame's magic (zstd 0.7) is not the frame magic.
        try expectRefused(
            file(raw + [0x27, 0xB5, 0x2F, 0xFD] + Array(real.dropFirst(4))), .decompressionFailed,
            at: frameAt,
            in: dir, "legacy-magic")
        // A frame that needs a dictionary, under a raw length that does not match either: the
        // dictionary is checked first (§4 step 7 before step 8); both at the frame.
        try expectRefused(
            file(Craft.le32(UInt32(n + 1)) + Craft.handFrame(tx, dictionaryID: 9)), .decompressionFailed,
            at: frameAt, in: dir, "dictionary")
    }

    @Test func aFailedDecompressionLeavesNoBadContextForTheNextCall() throws {
        // Calls one at a time: the pool hands the context of a failed call to the next one.
        let record = RecordGenerator.workload(.w1, seed: 31)
        let good = RecordCodec().encode(record, fileID: testFileID)
        let n = tx.count
        let raw = Craft.le32(UInt32(n))
        var bomb = HostileFrame.windowed(0x38)
        for i in 0..<8 { bomb += HostileFrame.block(last: i == 7, type: 1, size: 128 << 10) + [0x41] }
        let hostile = [
            raw + HostileFrame.singleSegment1(size: n, extra: 0x04) + HostileFrame.rawBlock(tx) + [
                1, 2, 3, 4,
            ],
            raw + bomb,
            raw + HostileFrame.singleSegment1(size: n) + HostileFrame.block(last: true, type: 2, size: 24)
                + [UInt8](repeating: 0xFF, count: 24),
            // A valid first block, then a corrupt one: the context has decoded part of a frame.
            raw + HostileFrame.windowed(0x38) + HostileFrame.rawBlock(Array(tx.prefix(n / 2)), last: false)
                + HostileFrame.block(last: true, type: 2, size: 24) + [UInt8](repeating: 0xFE, count: 24),
        ]
        for (i, body) in hostile.enumerated() {
            let e = Craft.error(file(body))
            #expect(e?.kind == .decompressionFailed, "hostile \(i): \(String(describing: e))")
            #expect(try RecordCodec().decode(good) == record, "after hostile \(i)")
            // A frame without a content size right after: nothing of the failed frame is left.
            let undeclared = file(raw + Craft.handFrame(tx, contentSize: false))
            #expect(throws: Never.self, "after hostile \(i)") { _ = try RecordCodec().decode(undeclared) }
        }
    }

    @Test func manyMoreConcurrentCallsThanPooledContexts() async throws {
        let records = (0..<4).map { RecordGenerator.workload(.w1, seed: 40 + UInt64($0)) }
        let files = records.map { RecordCodec().encode($0, fileID: testFileID) }
        let n = tx.count
        let corrupt = file(
            Craft.le32(UInt32(n)) + HostileFrame.singleSegment1(size: n)
                + HostileFrame.block(last: true, type: 2, size: 24)
                + [UInt8](repeating: 0xFF, count: 24))
        let tasks = Zstd.pooled * 12
        let failures = await withTaskGroup(of: [String].self) { group in
            for t in 0..<tasks {
                group.addTask {
                    var failures: [String] = []
                    for round in 0..<6 {
                        let i = (t + round) % records.count
                        // Encoding gives the bytes a lone call gives; decoding gives the record back.
                        if RecordCodec().encode(records[i], fileID: testFileID) != files[i] {
                            failures.append("task \(t) round \(round): encoding differs")
                        }
                        if (try? RecordCodec().decode(files[i])) != records[i] {
                            failures.append("task \(t) round \(round): decoding differs")
                        }
                        if (t + round) % 3 == 0 {
                            do {
                                _ = try RecordCodec().decode(corrupt)
                                failures.append("task \(t) round \(round): corrupt frame read")
                            } catch {
                                if (error as? FormatError)?.kind != .decompressionFailed {
                                    failures.append("task \(t) round \(round): \(error)")
                                }
                            }
                        }
                    }
                    return failures
                }
            }
            return await group.reduce(into: []) { $0 += $1 }
        }
        #expect(failures.isEmpty, "\(failures.prefix(5))")
    }

    // MARK: 2. The document's order

    @Test func theChecksBeforeTheFrameFollowTheDocumentedOrder() throws {
        let dir = try TemporaryDirectory("zstd-adversary-order")
        defer { dir.remove() }
        let body = Craft.zstdCompressed(tx)
        let frameBytes = body.count - 4
        // Step 1 before step 3: a raw length above maxDecodedSize and the ratio is limitExceeded at the tag.
        try expectRefused(
            file(Craft.le32(UInt32.max) + Array(body[4...])), .limitExceeded, at: bodyOffset - 8, in: dir,
            "decoded-limit")
        // Step 2: raw length 0, at the body (before the magic is looked at).
        try expectRefused(
            file(Craft.le32(0) + [1, 2, 3]), .malformed, at: bodyOffset, in: dir, "raw-length-0")
        // Step 3 before step 4: too large a ratio, even for a body that is not a frame.
        try expectRefused(
            file(Craft.le32(UInt32(frameBytes * 128 + 1)) + [UInt8](repeating: 0, count: frameBytes)),
            .limitExceeded, at: bodyOffset, in: dir, "ratio-before-magic")
        // Step 6's trailing bytes come before step 7 and step 8 (dictionary, declared size).
        let dict = Craft.handFrame(tx, dictionaryID: 3)
        try expectRefused(
            file(Craft.le32(UInt32(tx.count + 1)) + dict + [0]), .trailingBytes,
            at: bodyOffset + 4 + dict.count,
            in: dir, "trailing-before-dictionary")
        // Bit 1 in a version-2 file is an undefined flag; bits 0 and 1 together in version 3 too.
        let v2 = file(body, version: 2)
        try expectRefused(v2, .unsupportedFeature, at: bodyOffset - 6, in: dir, "zstd-flag-in-v2")
        try expectRefused(
            file(body, flags: RecordCodec.zstdFlag | RecordCodec.compressedFlag), .unsupportedFeature,
            at: bodyOffset - 6, in: dir, "both-flags")
    }

    @Test func aSecondSectionOfATagIsJudgedInTheEnginesOrder() throws {
        // The section checks before the body's: flags, then the decoded-size limit, then the
        // duplicate. Both readers must agree on which comes first.
        let dir = try TemporaryDirectory("zstd-adversary-dup")
        defer { dir.remove() }
        let first = Craft.section(tag: SectionTag.transactions, body: tx)
        let firstAt = Craft.header(sectionCount: 2, version: 3).count
        let secondAt = firstAt + first.count
        let body = Craft.zstdCompressed(tx)
        // A duplicate whose flags are not defined in version 2 (the zstd bit).
        let v2 = Craft.file(
            [first, Craft.section(tag: SectionTag.transactions, flags: RecordCodec.zstdFlag, body: body)],
            version: 2)
        try expectRefused(v2, .unsupportedFeature, at: secondAt + 2, in: dir, "dup-zstd-flag-v2")
        // A duplicate zstd section whose raw length is above the decoded-size limit.
        let huge = Craft.file(
            [
                first,
                Craft.section(
                    tag: SectionTag.transactions, flags: RecordCodec.zstdFlag,
                    body: Craft.le32(UInt32.max) + body.dropFirst(4)),
            ],
            version: 3)
        try expectRefused(huge, .limitExceeded, at: secondAt, in: dir, "dup-over-limit")
        // A duplicate zstd section too short for its raw length.
        let short = Craft.file(
            [first, Craft.section(tag: SectionTag.transactions, flags: RecordCodec.zstdFlag, body: [1, 2])],
            version: 3)
        try expectRefused(short, .malformed, at: secondAt + 8, in: dir, "dup-short")
        // A plain duplicate.
        let plain = Craft.file(
            [first, Craft.section(tag: SectionTag.transactions, flags: RecordCodec.zstdFlag, body: body)],
            version: 3)
        try expectRefused(plain, .duplicateSection, at: secondAt, in: dir, "dup-plain")
    }

    // MARK: 5. A machine without libzstd

    @Test func withoutLibzstdTheCheckOrderIsKeptAndTheLibraryNamed() throws {
        var missing = RecordCodec()
        missing.zstd = nil
        func error(_ bytes: [UInt8]) -> FormatError? {
            do {
                _ = try missing.decode(bytes)
                return nil
            } catch { return error }
        }
        let body = Craft.zstdCompressed(tx)
        // Steps 2 to 4 come before step 5: no library is needed to refuse these.
        #expect(error(file(Craft.le32(0) + [1, 2, 3]))?.kind == .malformed)
        #expect(error(file(Craft.le32(UInt32(body.count * 128)) + Array(body[4...])))?.kind == .limitExceeded)
        let notAFrame = error(file(Craft.compressed(tx)))
        #expect(notAFrame?.kind == .decompressionFailed && notAFrame?.offset == bodyOffset + 4)
        // A frame: the library is named, at the section's tag, whatever follows the frame.
        for bytes in [
            file(body), file(body + [0, 0]),
            file(Craft.le32(UInt32(tx.count)) + Craft.handFrame(tx, dictionaryID: 2)),
        ] {
            let e = error(bytes)
            #expect(e?.kind == .unsupportedFeature && e?.offset == bodyOffset - 8)
            #expect(e?.sectionTag == SectionTag.transactions)
            #expect(
                e?.description.contains("libzstd.so.1") == true && e?.description.contains("libzstd1") == true
            )
        }
        // Inspecting needs no library: the sections are listed as zstd without decompressing them.
        let v3 = RecordCodec().encode(RecordGenerator.workload(.w1, seed: 33), fileID: testFileID)
        let report = try RecordCodec.inspect(v3)
        #expect(report.header.formatVersion == 3 && report.sections.contains(where: \.isZstd))
        #expect(throws: FormatError.self) { try missing.decodeFile(v3) }
    }
}
