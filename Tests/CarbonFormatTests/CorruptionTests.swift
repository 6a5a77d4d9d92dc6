import CarbonModel
import CarbonStoreTestSupport
import Testing

@testable import CarbonFormat

/// Small valid files to damage: three of version 1 (the first three), the same three of version 2.
let sampleFiles: [(name: String, bytes: [UInt8])] = {
    let eur = CurrencyCode("EUR")!
    let t0 = Timestamp(millisecondsSince1970: 1_767_225_600_000)
    let tiny = UserRecord(
        userID: "alice", revision: 2, createdAt: t0, updatedAt: t0,
        transactions: [
            Transaction(
                id: "t1", time: t0, amount: Money(minorUnits: 1234, currency: eur), merchant: "Café",
                mcc: 5812),
            Transaction(
                id: "t2", time: t0, amount: Money(minorUnits: -50, currency: eur), metadata: ["k": "v"]),
        ],
        responses: [QuestionResponse(questionID: "diet", answer: .choices(["a", "b"]), answeredAt: t0)],
        preferences: ["units": Preference(value: "metric", updatedAt: t0)],
        footprints: [
            Footprint(
                id: "f1", transactionID: "t1", co2e: CO2e(milligrams: 1500), category: "food",
                methodology: "m", calculatedAt: t0)
        ],
        savings: [
            Saving(
                id: "s1", actionID: "bike", co2e: CO2e(milligrams: 9), period: Period(start: t0, end: t0),
                recordedAt: t0)
        ])
    var compressible = RecordGenerator.workload(
        .init(
            transactions: 40, merchants: 5, mccs: 3, currencies: 1, responses: 0, preferences: 0,
            footprints: 0, savings: 0),
        seed: 2)
    compressible.preservedSections = [PreservedSection(tag: 0x0100, flags: 0x0001, payload: [1, 2, 3])]
    let codec = RecordCodec(options: .init(compression: .zlib(level: 6), compressionThreshold: 0))
    let empty = UserRecord(userID: "e", createdAt: t0)
    let raw = RecordCodec(options: .init(compression: .none))
    return [
        ("tiny", raw.encodeVersion1(tiny)),
        ("compressed", codec.encodeVersion1(compressible)),
        ("empty", RecordCodec().encodeVersion1(empty)),
        ("tiny-v2", raw.encode(tiny, fileID: testFileID)),
        ("compressed-v2", codec.encode(compressible, fileID: testFileID)),
        ("empty-v2", RecordCodec().encode(empty, fileID: testFileID)),
    ]
}()

@Suite struct CorruptionTests {
    @Test func samplesAreValidAndCompressedOneIsCompressed() throws {
        for (_, bytes) in sampleFiles { _ = try RecordCodec().decode(bytes) }
        let (_, sections) = try RecordCodec.layout(of: sampleFiles[1].bytes)
        #expect(sections.contains { $0.isCompressed && $0.tag == SectionTag.transactions })
    }

    @Test(arguments: 0..<sampleFiles.count)
    func everyByteFlipIsRejected(sample: Int) {
        let bytes = sampleFiles[sample].bytes
        var accepted: [String] = []
        for i in bytes.indices {
            for mask: UInt8 in [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xFF] {
                var damaged = bytes
                damaged[i] ^= mask
                if case .success = Craft.decode(damaged) { accepted.append("byte \(i) ^ \(mask)") }
            }
        }
        #expect(accepted.isEmpty, "\(sampleFiles[sample].name): \(accepted.prefix(10))")
    }

    @Test(arguments: 0..<sampleFiles.count)
    func everyTruncationIsRejected(sample: Int) {
        let bytes = sampleFiles[sample].bytes
        var accepted: [Int] = []
        for n in 0..<bytes.count {
            if case .success = Craft.decode(Array(bytes.prefix(n))) { accepted.append(n) }
        }
        #expect(accepted.isEmpty, "\(sampleFiles[sample].name): prefixes \(accepted)")
    }

    @Test func truncationAtASectionBoundaryNamesTheMissingSections() throws {
        let bytes = sampleFiles[0].bytes
        let (header, sections) = try RecordCodec.layout(of: bytes)
        let e = Craft.error(Array(bytes.prefix(sections[2].offset)))
        #expect(e?.kind == .truncated)
        #expect(e?.detail.contains("after 2 of \(header.sectionCount) sections") == true)
    }

    /// In version 1 the file ends after its sections; in version 2 bytes that are not a valid
    /// frame there are an ignored tail (ChangeFrameTests).
    @Test func trailingBytesAreRejected() throws {
        for (_, bytes) in sampleFiles {
            for extra: [UInt8] in [
                [0], [0xFF, 0xFF], Array(bytes.suffix(20)), Craft.section(tag: 0x100, body: [1]),
            ] {
                if bytes[8] >= 2 {
                    let layout = try RecordCodec().decodeFile(bytes + extra).layout
                    #expect(layout.ignoredLength == extra.count && layout.validLength == bytes.count)
                    continue
                }
                #expect(Craft.error(bytes + extra)?.kind == .trailingBytes)
            }
        }
    }

    @Test func badMagic() {
        var bytes = sampleFiles[0].bytes
        bytes[1] = UInt8(ascii: "X")
        let e = Craft.error(bytes)
        #expect(e?.kind == .badMagic)
        #expect(e?.offset == 1)
        #expect(Craft.error(Array("{\"userId\": \"x\"}".utf8))?.kind == .badMagic)
        #expect(Craft.error([])?.kind == .truncated)
        #expect(Craft.error([0x89, 0x43])?.kind == .truncated)
        // A text-mode transfer that turned CR LF into LF.
        var text = sampleFiles[0].bytes
        text.remove(at: 4)
        #expect(Craft.error(text)?.kind == .badMagic)
        // A 7-bit transfer that cleared the high bit.
        var sevenBit = sampleFiles[0].bytes
        sevenBit[0] &= 0x7F
        #expect(Craft.error(sevenBit)?.kind == .badMagic)
    }

    @Test func unsupportedVersionAndFlags() throws {
        let v4 = Craft.header(sectionCount: 0, version: 4)
        let e = Craft.error(v4)
        #expect(e?.kind == .unsupportedVersion)
        #expect(
            e?.description
                == "unsupported format version at offset 8: the file has format version 4; this reader supports versions 1 to 3"
        )
        #expect(Craft.error(Craft.header(sectionCount: 0, flags: 0x0001))?.kind == .unsupportedFeature)
        #expect(Craft.error(Craft.header(sectionCount: 0, version: 0))?.kind == .unsupportedVersion)
        // Unknown flags on a known section, and an unknown critical section.
        let tx = Craft.transactionsPayload()
        #expect(
            Craft.error(Craft.file([Craft.section(tag: 1, flags: 0x0002, body: tx)]))?.kind
                == .unsupportedFeature)
        // The zstd flag is defined from version 3 on; never together with the zlib flag; bit 2 in none.
        let zstdBody = Craft.zstdCompressed(tx + Array(repeating: 0, count: 0))
        for (version, flags) in [(UInt16(2), UInt16(0x0002)), (3, 0x0003), (3, 0x0004), (3, 0x0006)] {
            let e = Craft.error(
                Craft.file([Craft.section(tag: 1, flags: flags, body: zstdBody)], version: version))
            #expect(e?.kind == .unsupportedFeature, "version \(version), flags \(flags)")
            #expect(e?.offset == Craft.header(sectionCount: 1, version: version).count + 2)
        }
        #expect(
            try RecordCodec().decode(
                Craft.file([Craft.section(tag: 1, flags: 0x0002, body: zstdBody)], version: 3)
            )
            .transactions.count == 1)
        let critical = Craft.error(Craft.file([Craft.section(tag: 0x8001, body: [1, 2])]))
        #expect(critical?.kind == .unsupportedFeature)
        #expect(critical?.sectionTag == 0x8001)
    }

    @Test func checksumMismatchNamesTheSection() throws {
        var bytes = sampleFiles[0].bytes
        let (_, sections) = try RecordCodec.layout(of: bytes)
        let tx = sections[0]
        bytes[tx.offset + 8 + 3] ^= 0x40
        let e = try #require(Craft.error(bytes))
        #expect(e.kind == .checksumMismatch)
        #expect(e.sectionTag == 1)
        #expect(e.sectionName == "transactions")
        #expect(e.offset == tx.offset + 8 + tx.storedLength)
        #expect(
            e.description.hasPrefix(
                "checksum mismatch in section 'transactions' (tag 1) at offset \(e.offset): stored 0x"))
        // The header's own checksum.
        var header = sampleFiles[0].bytes
        header[20] ^= 1  // createdAt
        let h = try #require(Craft.error(header))
        #expect(h.kind == .checksumMismatch)
        #expect(h.sectionTag == nil)
        #expect(h.description.hasPrefix("checksum mismatch at offset 49: header: stored 0x"))
    }

    @Test func lengthsBeyondTheEnd() {
        let tx = Craft.transactionsPayload()
        // A section length far beyond the file: refused before anything is read or allocated.
        let e = Craft.error(Craft.file([Craft.section(tag: 1, body: tx, length: 0xFFFF_FFFF)]))
        #expect(e?.kind == .lengthBeyondEnd)
        #expect(e?.sectionTag == 1)
        #expect(e?.offset == 44 + 1 + 4 + 4)  // the length field of the section after the header
        // A section whose CRC is cut off.
        let whole = Craft.file([Craft.section(tag: 1, body: tx)])
        #expect(Craft.error(Array(whole.dropLast(2)))?.kind == .lengthBeyondEnd)
        // User id lengths.
        #expect(Craft.error(Craft.header(sectionCount: 0, userIDLength: 0xFFFF_FFFF))?.kind == .limitExceeded)
        #expect(Craft.error(Craft.header(sectionCount: 0, userIDLength: 60_000))?.kind == .lengthBeyondEnd)
        // A huge section count with nothing behind it.
        #expect(Craft.error(Craft.header(sectionCount: .max))?.kind == .truncated)
    }

    @Test func hugeCountsInsidePayloadsDoNotAllocate() {
        let huge: [UInt64] = [1 << 62, UInt64.max, 1_000_000]
        for n in huge {
            let cases: [(String, UInt16, [UInt8])] = [
                ("transaction count", 1, Craft.transactionsPayload(count: n)),
                ("dictionary size", 1, Craft.varint(1) + Craft.varint(n)),
                ("string length", 1, Craft.varint(1) + Craft.varint(1) + Craft.varint(n) + [0x41]),
                ("response count", 2, Craft.varint(n) + [0]),
                ("choice count", 2, Craft.varint(1) + Craft.string("q") + [0, 3] + Craft.varint(n) + [0]),
                ("preference count", 3, Craft.varint(n)),
                ("footprint count", 4, Craft.varint(n)),
                ("saving count", 5, Craft.varint(n)),
            ]
            for (what, tag, payload) in cases {
                let e = Craft.error(Craft.file([Craft.section(tag: tag, body: payload)]))
                #expect(e?.kind == .lengthBeyondEnd, "\(what) \(n): \(String(describing: e))")
                #expect(e?.sectionTag == tag)
            }
        }
    }

    @Test func compressedSectionLimits() throws {
        let payload = Craft.transactionsPayload()
        func file(_ body: [UInt8]) -> [UInt8] { Craft.file([Craft.section(tag: 1, flags: 1, body: body)]) }
        // Valid.
        _ = try RecordCodec().decode(file(Craft.compressed(payload)))
        // A raw length above the decoded-size limit, or (within it) above what deflate can produce
        // from so few bytes.
        #expect(Craft.error(file(Craft.compressed(payload, declaredLength: .max)))?.kind == .limitExceeded)
        #expect(
            Craft.error(file(Craft.compressed(payload, declaredLength: 200 << 20)))?.kind == .limitExceeded)
        #expect(
            Craft.error(file(Craft.compressed(payload, declaredLength: 1 << 20)))?.kind
                == .decompressionFailed)
        // A raw length that does not match the stream's output, both ways.
        #expect(
            Craft.error(file(Craft.compressed(payload, declaredLength: UInt32(payload.count + 1))))?.kind
                == .decompressionFailed)
        #expect(
            Craft.error(file(Craft.compressed(payload, declaredLength: UInt32(payload.count - 1))))?.kind
                == .decompressionFailed)
        #expect(Craft.error(file(Craft.compressed(payload, declaredLength: 0)))?.kind == .malformed)
        // Bytes after the zlib stream, a corrupt stream, no room for the raw length.
        #expect(Craft.error(file(Craft.compressed(payload) + [0]))?.kind == .trailingBytes)
        var corrupt = Craft.compressed(payload)
        corrupt[7] ^= 0xFF
        #expect(Craft.error(file(corrupt))?.kind == .decompressionFailed)
        #expect(Craft.error(file([1, 0]))?.kind == .malformed)
        #expect(Craft.error(file(Craft.le32(10)))?.kind == .decompressionFailed)
    }

    @Test func varintsRejectOverlongAndOverflowingEncodings() throws {
        func read(_ bytes: [UInt8]) -> Result<UInt64, FormatError> {
            bytes.withUnsafeBytes { buffer in
                var r = ByteReader(buffer, context: ReaderContext(fileOffset: 0))
                return Result(catching: { () throws(FormatError) -> UInt64 in
                    let v = try r.varint()
                    guard r.atEnd else { throw r.error(.trailingBytes, "") }
                    return v
                })
            }
        }
        #expect(try read([0x00]).get() == 0)
        #expect(try read([0x7F]).get() == 127)
        #expect(try read([0x80, 0x01]).get() == 128)
        #expect(try read([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).get() == .max)
        for v: UInt64 in [0, 1, 127, 128, 300, 1 << 35, .max - 1, .max] {
            #expect(try read(Craft.varint(v)).get() == v)
        }
        for bad: [UInt8] in [
            [0x80, 0x00], [0xFF, 0x80, 0x00], [0x80, 0x80, 0x80, 0x00],  // overlong
            [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02],  // 65 bits
            [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x81, 0x00],  // 11 bytes
            [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00],  // overlong zero
        ] {
            #expect(throws: FormatError.self) { try read(bad).get() }
            if case .failure(let e) = read(bad) { #expect(e.kind == .malformed) }
        }
        #expect((try? read([0x80]).get()) == nil)
        if case .failure(let e) = read([0x80, 0x80]) { #expect(e.kind == .truncated) }
        for v: Int64 in [0, -1, 1, .min, .max, -64, 64] {
            #expect(zigzagDecode(zigzagEncode(v)) == v)
        }
        #expect(zigzagEncode(-1) == 1)
        #expect(zigzagEncode(1) == 2)
        #expect(zigzagEncode(.min) == .max)
    }

    @Test func invalidUTF8IsRejectedNotRepaired() {
        let bad: [[UInt8]] = [
            [0xC3, 0x28], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xFF], [0xE2, 0x82],
        ]
        for b in bad {
            let e = Craft.error(Craft.header(userID: b, sectionCount: 0))
            #expect(e?.kind == .invalidValue, "user id \(b)")
            let body = Craft.transactionsPayload(id: "").replacingFirstID(with: b)
            let s = Craft.error(Craft.file([Craft.section(tag: 1, body: body)]))
            #expect(s?.kind == .invalidValue, "transaction id \(b)")
            #expect(s?.description.contains("transaction id is not valid UTF-8") == true)
        }
    }

    @Test func invalidValues() throws {
        func tx(_ payload: [UInt8]) -> FormatError? {
            Craft.error(Craft.file([Craft.section(tag: 1, body: payload)]))
        }
        let mcc9999 = Craft.decode(
            Craft.file([Craft.section(tag: 1, body: Craft.transactionsPayload(mcc: 10_000))]))
        #expect(try mcc9999.get().transactions[0].mcc == 9999)
        let mcc = tx(Craft.transactionsPayload(mcc: 10_001))
        #expect(mcc?.kind == .invalidValue)
        #expect(mcc?.detail.hasPrefix("merchant category code 10000 is above 9999") == true)
        for code in ["eur", "E1R", "EURO", "", "ßa"] {
            #expect(tx(Craft.transactionsPayload(dictionary: [code]))?.kind == .invalidValue, "\(code)")
        }
        #expect(tx(Craft.transactionsPayload(currency: 1))?.kind == .malformed)
        #expect(tx(Craft.transactionsPayload(merchant: 2))?.kind == .malformed)
        #expect(tx(Craft.transactionsPayload(dictionary: []))?.kind == .malformed)
        #expect(tx(Craft.transactionsPayload(description: Craft.varint(50)))?.kind == .lengthBeyondEnd)
        // Metadata with a repeated key.
        #expect(
            tx(Craft.transactionsPayload(dictionary: ["EUR", "k"], metadata: [2, 1, 1, 1, 0]))?.kind
                == .malformed)
        // Bytes left over after the columns.
        #expect(tx(Craft.transactionsPayload() + [0])?.kind == .trailingBytes)
        func responses(_ payload: [UInt8]) -> FormatError? {
            Craft.error(Craft.file([Craft.section(tag: 2, body: payload)]))
        }
        #expect(responses([1] + Craft.string("q") + [0, 9])?.kind == .malformed)  // unknown answer kind
        #expect(responses([1] + Craft.string("q") + [0, 2, 2])?.kind == .malformed)  // boolean 2
        #expect(responses([1] + Craft.string("q") + [0, 1, 0, 0])?.kind == .truncated)  // short double
        let prefs =
            [2] + Craft.string("k") + Craft.string("a") + [0] + Craft.string("k") + Craft.string("b") + [0]
        #expect(Craft.error(Craft.file([Craft.section(tag: 3, body: prefs)]))?.kind == .malformed)
        // Footprint period presence must be 0 or 1.
        let fp = [1, 1] + Craft.string("c") + Craft.string("f") + [0, 0, 0, 0, 0, 2]
        #expect(Craft.error(Craft.file([Craft.section(tag: 4, body: fp)]))?.kind == .malformed)
        // Savings: money saved refers to a non-currency dictionary entry.
        let sv = [1, 1] + Craft.string("bike") + Craft.string("s") + [0, 0, 1, 5, 0, 0, 0]
        #expect(Craft.error(Craft.file([Craft.section(tag: 5, body: sv)]))?.kind == .invalidValue)
    }

    @Test func sectionStructure() {
        let tx = Craft.section(tag: 1, body: Craft.transactionsPayload())
        let dup = Craft.error(Craft.file([tx, tx]))
        #expect(dup?.kind == .duplicateSection)
        #expect(dup?.sectionTag == 1)
        #expect(Craft.error(Craft.file([Craft.section(tag: 0, body: [])]))?.kind == .malformed)
        #expect(Craft.error(Craft.file([Craft.section(tag: 1, body: [])]))?.kind == .truncated)
        // Sections in another order than the encoder's are accepted.
        let prefs = Craft.section(tag: 3, body: [1] + Craft.string("k") + Craft.string("v") + [2])
        let record = try? RecordCodec().decode(Craft.file([prefs, tx]))
        #expect(record?.transactions.count == 1)
        #expect(record?.preferences["k"]?.updatedAt.millisecondsSince1970 == 1)
    }

    /// Payloads with valid checksums but random damage inside: the decoder must answer with a
    /// record or a FormatError, never crash or hang.
    @Test func damagedPayloadsWithValidChecksumsNeverCrash() throws {
        var rng = SeededRandom(seed: 77)
        var outcomes = (decoded: 0, rejected: 0)
        for seed in UInt64(1)..<60 {
            let record = RecordGenerator.record(seed: seed, maxItems: 6)
            let bytes = RecordCodec(options: .init(compression: .none)).encode(record)
            let (header, sections) = try RecordCodec.layout(of: bytes)
            for (index, s) in sections.enumerated() {
                let body = Array(bytes[(s.offset + 8)..<(s.offset + 8 + s.storedLength)])
                for _ in 0..<25 {
                    var damaged = body
                    switch rng.int(0...3) {
                    case 0:
                        for _ in 0..<rng.int(1...3) where !damaged.isEmpty {
                            damaged[rng.int(0...(damaged.count - 1))] = UInt8.random(in: 0...255, using: &rng)
                        }
                    case 1: damaged = Array(damaged.prefix(rng.int(0...damaged.count)))
                    case 2:
                        damaged.insert(UInt8.random(in: 0...255, using: &rng), at: rng.int(0...damaged.count))
                    default:
                        if !damaged.isEmpty { damaged[rng.int(0...(damaged.count - 1))] ^= 0x80 }
                    }
                    var file = Craft.header(
                        userID: Array(header.userID.utf8), sectionCount: UInt32(sections.count),
                        revision: header.revision,
                        createdAt: header.createdAt.millisecondsSince1970,
                        updatedAt: header.updatedAt.millisecondsSince1970)
                    for (j, other) in sections.enumerated() {
                        let b =
                            j == index
                            ? damaged
                            : Array(bytes[(other.offset + 8)..<(other.offset + 8 + other.storedLength)])
                        file += Craft.section(tag: other.tag, flags: other.flags, body: b)
                    }
                    switch Craft.decode(file) {
                    case .success: outcomes.decoded += 1
                    case .failure: outcomes.rejected += 1
                    }
                }
            }
        }
        #expect(outcomes.rejected > 0)
    }
}

extension Array where Element == UInt8 {
    /// Replaces the empty transaction id (bytes `00` right after the 1-entry "EUR" dictionary).
    func replacingFirstID(with bytes: [UInt8]) -> [UInt8] {
        let at = 1 + 1 + 4
        var out = self
        out.replaceSubrange(at...at, with: Craft.varint(UInt64(bytes.count)) + bytes)
        return out
    }
}
