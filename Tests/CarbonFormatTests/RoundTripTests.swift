import CarbonModel
import CarbonStoreTestSupport
import Testing

@testable import CarbonFormat

let codecs: [RecordCodec] = [
    RecordCodec(),
    RecordCodec(options: .init(compression: .none)),
    RecordCodec(options: .init(compression: .zlib(level: 1), compressionThreshold: 0)),
    RecordCodec(options: .init(compression: .zlib(level: 9), compressionThreshold: 64)),
]

@Suite struct RoundTripTests {
    @Test(arguments: 0..<codecs.count)
    func generatedRecordsRoundTrip(codecIndex: Int) throws {
        let codec = codecs[codecIndex]
        for seed in UInt64(0)..<300 {
            let record = RecordGenerator.record(seed: seed, preservedSections: seed % 3 == 1)
            let bytes = codec.encode(record, fileID: testFileID)
            let decoded = try codec.decode(bytes)
            #expect(decoded == record, "seed \(seed)")
            #expect(
                codec.encode(decoded, fileID: testFileID) == bytes,
                "re-encoding seed \(seed) gives the same bytes")
            // Strings come back with their exact bytes, not just canonically equivalent ones.
            #expect(
                zip(decoded.transactions, record.transactions).allSatisfy {
                    Array(($0.merchant ?? "").utf8) == Array(($1.merchant ?? "").utf8)
                        && Array($0.id.utf8) == Array($1.id.utf8)
                }, "seed \(seed)")
        }
    }

    @Test func isoSafeRecordsRoundTrip() throws {
        for seed in UInt64(1000)..<1100 {
            let record = RecordGenerator.record(seed: seed, isoSafe: true, maxItems: 40)
            #expect(
                try RecordCodec().decode(RecordCodec().encode(record, fileID: testFileID)) == record,
                "seed \(seed)")
        }
    }

    @Test(arguments: [RecordGenerator.Workload.w1, .w2])
    func workloadsRoundTrip(workload: RecordGenerator.Workload) throws {
        let record = RecordGenerator.workload(workload, seed: 3)
        #expect(record.transactions.count == workload.transactions)
        for codec in [RecordCodec(), RecordCodec(options: .init(compression: .none))] {
            let bytes = codec.encode(record, fileID: testFileID)
            #expect(try codec.decode(bytes) == record)
            #expect(codec.encode(record, fileID: testFileID) == bytes)
        }
    }

    @Test func encodingIsDeterministic() {
        let w1 = RecordGenerator.workload(.w1, seed: 9)
        #expect(
            RecordCodec().encode(w1, fileID: testFileID)
                == RecordCodec().encode(RecordGenerator.workload(.w1, seed: 9), fileID: testFileID))
        // The same preferences and metadata inserted in another order (so iterated in another order).
        var a = UserRecord(userID: "u", createdAt: Timestamp(millisecondsSince1970: 0))
        var b = a
        let keys = (0..<50).map { "key-\($0)" }
        for k in keys {
            a.preferences[k] = Preference(value: k, updatedAt: Timestamp(millisecondsSince1970: 1))
        }
        for k in keys.reversed() {
            b.preferences[k] = Preference(value: k, updatedAt: Timestamp(millisecondsSince1970: 1))
        }
        var t = Transaction(
            id: "t", time: Timestamp(millisecondsSince1970: 0),
            amount: Money(minorUnits: 1, currency: CurrencyCode("EUR")!))
        var metaA = ExactDictionary<String>()
        var metaB = ExactDictionary<String>()
        for k in keys { metaA[k] = k }
        for k in keys.reversed() { metaB[k] = k }
        t.metadata = metaA
        a.transactions = [t]
        t.metadata = metaB
        b.transactions = [t]
        #expect(RecordCodec().encode(a, fileID: testFileID) == RecordCodec().encode(b, fileID: testFileID))
    }

    @Test func canonicallyEquivalentStringsKeepTheirBytes() throws {
        let nfc = "Caf\u{E9}"
        let nfd = "Cafe\u{301}"
        #expect(nfc == nfd)  // Swift's String equality is canonical equivalence...
        let eur = CurrencyCode("EUR")!
        let record = UserRecord(
            userID: "u", createdAt: Timestamp(millisecondsSince1970: 0),
            transactions: [
                Transaction(
                    id: "1", time: .init(millisecondsSince1970: 0),
                    amount: Money(minorUnits: 1, currency: eur), merchant: nfc),
                Transaction(
                    id: "2", time: .init(millisecondsSince1970: 0),
                    amount: Money(minorUnits: 1, currency: eur), merchant: nfd),
            ])
        let decoded = try RecordCodec().decode(RecordCodec().encode(record, fileID: testFileID))
        // ...but the format keeps each spelling's own bytes (the dictionary is keyed by bytes).
        #expect(Array(decoded.transactions[0].merchant!.utf8) == Array(nfc.utf8))
        #expect(Array(decoded.transactions[1].merchant!.utf8) == Array(nfd.utf8))
    }

    @Test func doublesKeepTheirBits() throws {
        let values: [Double] = [
            -0.0, 0, .infinity, -.infinity, .leastNonzeroMagnitude, .greatestFiniteMagnitude, 0.1,
        ]
        var record = UserRecord(userID: "u", createdAt: Timestamp(millisecondsSince1970: 0))
        for (i, v) in values.enumerated() {
            record.responses.append(
                QuestionResponse(
                    questionID: "q\(i)", answer: .number(v), answeredAt: .init(millisecondsSince1970: 0)))
        }
        record.responses.append(
            QuestionResponse(
                questionID: "qnan", answer: .number(.nan), answeredAt: .init(millisecondsSince1970: 0)))
        let decoded = try RecordCodec().decode(RecordCodec().encode(record, fileID: testFileID))
        for (i, v) in values.enumerated() {
            guard case .number(let d) = decoded.responses[i].answer else {
                Issue.record("not a number")
                continue
            }
            #expect(d.bitPattern == v.bitPattern)
        }
        guard case .number(let d) = decoded.responses.last!.answer else { return }
        #expect(d.isNaN)
    }

    @Test func extremeValuesRoundTrip() throws {
        let eur = CurrencyCode("EUR")!
        let times: [Int64] = [.min, .max, 0, -1, .min, .max]  // worst-case deltas, unsorted
        let record = UserRecord(
            userID: String(repeating: "🙂", count: 1000), revision: .max,
            createdAt: .init(millisecondsSince1970: .min),
            updatedAt: .init(millisecondsSince1970: .max),
            transactions: ItemList(
                times.enumerated().map {
                    Transaction(
                        id: "\($0.offset)", time: .init(millisecondsSince1970: $0.element),
                        amount: Money(minorUnits: $0.offset % 2 == 0 ? .min : .max, currency: eur),
                        mcc: $0.offset % 2 == 0 ? 0 : 9999,
                        description: "\u{0}", metadata: ["\u{0}": ""])
                }),
            footprints: [
                Footprint(
                    id: "f",
                    period: Period(
                        start: .init(millisecondsSince1970: .max), end: .init(millisecondsSince1970: .min)),
                    co2e: CO2e(milligrams: .min), category: "", methodology: "",
                    calculatedAt: .init(millisecondsSince1970: .min))
            ],
            savings: [
                Saving(
                    id: "s", actionID: "", co2e: CO2e(milligrams: .max),
                    moneySaved: Money(minorUnits: .min, currency: eur),
                    period: Period(
                        start: .init(millisecondsSince1970: .min), end: .init(millisecondsSince1970: .max)),
                    recordedAt: .init(millisecondsSince1970: .max))
            ])
        for codec in codecs {
            #expect(try codec.decode(codec.encode(record, fileID: testFileID)) == record)
        }
    }

    @Test func emptyRecordIsHeaderOnly() throws {
        let record = UserRecord(userID: "someone", revision: 3, createdAt: .init(millisecondsSince1970: 10))
        let bytes = RecordCodec().encode(record, fileID: testFileID)
        #expect(bytes.count == 60 + 7 + 4)
        #expect(try RecordCodec().decode(bytes) == record)
    }

    @Test func readHeaderReadsOnlyTheHeader() throws {
        let record = RecordGenerator.workload(.w1, seed: 4)
        let bytes = RecordCodec().encode(record, fileID: testFileID)
        let header = try RecordCodec.readHeader(bytes)
        #expect(header.userID == record.userID)
        #expect(header.revision == record.revision)
        #expect(header.createdAt == record.createdAt)
        #expect(header.updatedAt == record.updatedAt)
        #expect(header.formatVersion == 3)
        #expect(header.fileID == testFileID)
        #expect(header.flags == 0)
        #expect(header.sectionCount == 5)
        // A prefix holding the header is enough; one byte less is not.
        #expect(try RecordCodec.readHeader(Array(bytes.prefix(header.byteCount))) == header)
        #expect(throws: FormatError.self) {
            try RecordCodec.readHeader(Array(bytes.prefix(header.byteCount - 1)))
        }
    }

    @Test func compressionIsUsedOnlyWhenItPays() throws {
        let w1 = RecordGenerator.workload(.w1, seed: 5)
        let (_, sections) = try RecordCodec.layout(of: RecordCodec().encode(w1, fileID: testFileID))
        #expect(sections.map(\.tag) == [1, 2, 3, 4, 5])
        #expect(sections.first { $0.tag == SectionTag.transactions }!.isCompressed)
        #expect(sections.first { $0.tag == SectionTag.footprints }!.isCompressed)
        for s in sections where s.isCompressed {
            #expect(s.rawLength >= 512)
            #expect(s.storedLength < s.rawLength)
        }
        for s in sections where !s.isCompressed { #expect(s.rawLength == s.storedLength) }
        let raw = try RecordCodec.layout(
            of: RecordCodec(options: .init(compression: .none)).encode(w1, fileID: testFileID))
        #expect(raw.sections.allSatisfy { !$0.isCompressed })
        let level0 = try RecordCodec.layout(
            of: RecordCodec(options: .init(compression: .zlib(level: 0))).encode(w1, fileID: testFileID))
        #expect(level0.sections.allSatisfy { !$0.isCompressed })
        // Random bytes don't shrink: kept raw even above the threshold.
        var noise = UserRecord(userID: "n", createdAt: .init(millisecondsSince1970: 0))
        var rng = SeededRandom(seed: 1)
        noise.responses = [
            QuestionResponse(
                questionID: "q",
                answer: .text(
                    String(
                        decoding: (0..<4000).map { _ in UInt8.random(in: 0x21...0x7E, using: &rng) },
                        as: UTF8.self)),
                answeredAt: .init(millisecondsSince1970: 0))
        ]
        let noisy = try RecordCodec.layout(
            of: RecordCodec(options: .init(compression: .zlib(level: 9), compressionThreshold: 0)).encode(
                noise, fileID: testFileID))
        #expect(noisy.sections.count == 1)
        #expect(noisy.sections[0].rawLength > 3000)
    }

    @Test func decodeAcceptsOtherCollections() throws {
        let record = RecordGenerator.record(seed: 11)
        let bytes = RecordCodec().encode(record, fileID: testFileID)
        #expect(try RecordCodec().decode(bytes[...]) == record)
        #expect(try RecordCodec().decode(AnyCollection(bytes)) == record)
        #expect(try bytes.withUnsafeBytes { try RecordCodec().decode($0) } == record)
    }
}
