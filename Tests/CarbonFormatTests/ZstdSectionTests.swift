import CarbonModel
import CarbonStoreTestSupport
import Testing

@testable import CarbonFormat

/// Version 3: sections compressed with zstd (docs/FORMAT.md §4, "Compression").
@Suite struct ZstdSectionTests {
    let tx = Craft.transactionsPayload()

    /// The error of decoding a version-3 file whose only section is a transactions section with
    /// `body` and `flags` (zstd by default).
    func error(_ body: [UInt8], flags: UInt16 = RecordCodec.zstdFlag, codec: RecordCodec = RecordCodec())
        -> FormatError?
    {
        do {
            _ = try codec.decode(Craft.file([Craft.section(tag: 1, flags: flags, body: body)], version: 3))
            return nil
        } catch { return error }
    }

    /// Where the body of the only section of such a file starts.
    var bodyOffset: Int { Craft.header(sectionCount: 1, version: 3).count + 8 }

    @Test func theDefaultWritesVersion3WithZstdSections() throws {
        #expect(RecordCodec.zstdVersion != nil, "libzstd.so.1 is part of every Debian system")
        let record = RecordGenerator.workload(.w1, seed: 11)
        let bytes = RecordCodec().encode(record, fileID: testFileID)
        let (header, sections) = try RecordCodec.layout(of: bytes)
        #expect(header.formatVersion == 3)
        let large = sections.filter { $0.rawLength >= 512 }
        #expect(!large.isEmpty && large.allSatisfy { $0.isZstd && $0.flags == RecordCodec.zstdFlag })
        #expect(sections.filter { $0.rawLength < 512 }.allSatisfy { !$0.isCompressed })
        #expect(try RecordCodec().decode(bytes) == record)
        // Smaller than the same record with zlib at level 1, which is version 2.
        let zlib = RecordCodec(options: .init(compression: .zlib(level: 1))).encode(
            record, fileID: testFileID)
        #expect(try RecordCodec.readHeader(zlib).formatVersion == 2)
        #expect(try RecordCodec.layout(of: zlib).sections.allSatisfy { !$0.isZstd })
        #expect(bytes.count < zlib.count)
        #expect(try RecordCodec().decode(zlib) == record)
    }

    @Test func aFileWithNothingCompressedStaysVersion2() throws {
        // Every section below the threshold: nothing needs version 3.
        let small = RecordGenerator.record(seed: 3)
        let codec = RecordCodec(options: .init(compression: .zstd(level: 1), compressionThreshold: 1 << 30))
        let bytes = codec.encode(small, fileID: testFileID)
        #expect(try RecordCodec.readHeader(bytes).formatVersion == 2)
        #expect(try RecordCodec().decode(bytes) == small)
        let off = RecordCodec(options: .init(compression: .zstd(level: 0)))
        let w1 = RecordGenerator.workload(.w1, seed: 1)
        let raw = off.encode(w1, fileID: testFileID)
        #expect(try RecordCodec.readHeader(raw).formatVersion == 2)
        #expect(try RecordCodec.layout(of: raw).sections.allSatisfy { !$0.isCompressed })
    }

    @Test func everyLevelRoundTripsAndIsDeterministic() throws {
        let record = RecordGenerator.workload(.w1, seed: 12)
        for level: Int32 in [-5, 1, 3, 19, 40] {
            let codec = RecordCodec(options: .init(compression: .zstd(level: level)))
            let bytes = codec.encode(record, fileID: testFileID)
            #expect(codec.encode(record, fileID: testFileID) == bytes, "level \(level)")
            #expect(try RecordCodec().decode(bytes) == record, "level \(level)")
        }
    }

    @Test func withoutLibzstdWritersUseZlibAndReadersNameTheLibrary() throws {
        let record = RecordGenerator.workload(.w1, seed: 13)
        var missing = RecordCodec()
        missing.zstd = nil
        let bytes = missing.encode(record, fileID: testFileID)
        #expect(try RecordCodec.readHeader(bytes).formatVersion == 2)
        let sections = try RecordCodec.layout(of: bytes).sections
        #expect(sections.contains(where: \.isCompressed) && !sections.contains(where: \.isZstd))
        #expect(try missing.decode(bytes) == record)
        // A version-3 file cannot be read there: the error says what to install.
        let v3 = RecordCodec().encode(record, fileID: testFileID)
        let e = #expect(throws: FormatError.self) { try missing.decode(v3) }
        #expect(e?.kind == .unsupportedFeature)
        #expect(e?.description.contains("libzstd") == true)
        #expect(e?.sectionTag == SectionTag.transactions)
    }

    @Test func theWrittenFormatIsDescribedForLogs() {
        #expect(RecordCodec().writtenFormat == "version 3 (zstd \(RecordCodec.zstdVersion!), level 1)")
        #expect(
            RecordCodec(options: .init(compression: .zstd(level: 40))).writtenFormat.hasSuffix("level 19)"))
        #expect(
            RecordCodec(options: .init(compression: .zlib(level: 1))).writtenFormat.hasPrefix(
                "version 2 (zlib level 1"))
        #expect(RecordCodec(options: .init(compression: .none)).writtenFormat == "version 2 (uncompressed)")
        var missing = RecordCodec()
        missing.zstd = nil
        #expect(missing.writtenFormat.contains("libzstd.so.1 was not found"))
    }

    @Test func declaredLengthsAreCheckedBeforeDecompressing() throws {
        let zero = Craft.zstdCompressed(tx, declaredLength: 0)
        #expect(error(zero)?.kind == .malformed)
        // More than maxCompressionRatio times the frame: refused unread.
        let body = Craft.zstdCompressed(tx)
        let frameBytes = body.count - 4
        let tooMuch = Craft.zstdCompressed(tx, declaredLength: UInt32(frameBytes * 128 + 1))
        let e = error(tooMuch)
        #expect(e?.kind == .limitExceeded && e?.offset == bodyOffset)
        // A declared length above the decoded-size limit is refused before anything else.
        let huge = Craft.zstdCompressed(tx, declaredLength: UInt32.max)
        #expect(error(huge)?.kind == .limitExceeded)
        // A body too short for its raw length.
        #expect(error([1, 0])?.kind == .malformed)
    }

    @Test func whatIsNotOneZstdFrameIsRefused() throws {
        let body = Craft.zstdCompressed(tx)
        let frame = Array(body[4...])
        let raw = Array(body[..<4])
        // Not a zstd frame: a zlib stream under the zstd flag, a skippable frame, nothing.
        let zlibUnderZstd = Craft.compressed(tx)
        #expect(error(zlibUnderZstd)?.kind == .decompressionFailed)
        let skippable: [UInt8] = [0x50, 0x2A, 0x4D, 0x18, 4, 0, 0, 0, 1, 2, 3, 4]
        #expect(error(raw + skippable + frame)?.kind == .decompressionFailed)
        #expect(error(raw)?.kind == .limitExceeded)  // no frame bytes: any raw length is too many
        #expect(error(raw + [0x28, 0xB5, 0x2F])?.kind == .decompressionFailed)
        // Cut short, anywhere in the frame.
        for cut in [1, 5, frame.count / 2, frame.count - 1] {
            let e = error(raw + frame.prefix(frame.count - cut))
            #expect(e?.kind == .decompressionFailed || e?.kind == .limitExceeded, "cut \(cut)")
        }
        // Bytes after the frame, or a second frame: trailing bytes at the first of them.
        let trailing = error(body + [0])
        #expect(trailing?.kind == .trailingBytes && trailing?.offset == bodyOffset + body.count)
        let twice = error(raw + frame + frame)
        #expect(twice?.kind == .trailingBytes && twice?.offset == bodyOffset + body.count)
    }

    @Test func theFrameMustGiveExactlyTheDeclaredBytes() throws {
        let small = Array(tx.prefix(40))
        let payload = Craft.transactionsPayload()
        #expect(payload.count <= 255)
        // A frame by hand decodes (so the hand-made frames below are valid but for one thing).
        #expect(error(Craft.le32(UInt32(payload.count)) + Craft.handFrame(payload)) == nil)
        #expect(
            error(Craft.le32(UInt32(payload.count)) + Craft.handFrame(payload, contentSize: false)) == nil)
        // The header's content size differs from the section's raw length.
        let e = error(Craft.le32(UInt32(small.count + 1)) + Craft.handFrame(small))
        #expect(e?.kind == .decompressionFailed && e?.offset == bodyOffset + 4)
        // Without a content size in the header: fewer or more bytes than declared.
        #expect(
            error(Craft.le32(UInt32(payload.count + 1)) + Craft.handFrame(payload, contentSize: false))?.kind
                == .decompressionFailed)
        #expect(
            error(Craft.le32(UInt32(payload.count - 1)) + Craft.handFrame(payload, contentSize: false))?.kind
                == .decompressionFailed)
        // A frame that needs a dictionary.
        let dict = error(Craft.le32(UInt32(payload.count)) + Craft.handFrame(payload, dictionaryID: 7))
        #expect(dict?.kind == .decompressionFailed && dict?.description.contains("dictionary") == true)
    }

    @Test func damageInsideTheFrameIsCaughtByTheSectionCRCFirst() throws {
        var bytes = RecordCodec().encode(RecordGenerator.workload(.w1, seed: 14), fileID: testFileID)
        let s = try RecordCodec.layout(of: bytes).sections.first { $0.isZstd }!
        bytes[s.offset + 8 + 4 + s.storedLength / 2] ^= 0x10
        let e = Craft.error(bytes)
        #expect(e?.kind == .checksumMismatch && e?.sectionTag == s.tag)
    }

    @Test func concurrentCallsShareTheContextPool() async throws {
        let records = (0..<16).map { RecordGenerator.workload(.w1, seed: 100 + UInt64($0 % 4)) }
        let ok = await withTaskGroup(of: Bool.self) { group in
            for r in records {
                group.addTask {
                    (0..<5).allSatisfy { _ in
                        (try? RecordCodec().decode(RecordCodec().encode(r, fileID: testFileID))) == r
                    }
                }
            }
            return await group.reduce(true) { $0 && $1 }
        }
        #expect(ok)
    }
}
