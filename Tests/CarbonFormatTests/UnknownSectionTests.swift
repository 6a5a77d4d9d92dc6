import CarbonModel
import CarbonStoreTestSupport
import Testing

@testable import CarbonFormat

@Suite struct UnknownSectionTests {
    @Test func unknownSectionsSurviveARewriteByteForByte() throws {
        let record = RecordGenerator.workload(.w1, seed: 6)
        let original = RecordCodec().encode(record, fileID: testFileID)
        let (header, _) = try RecordCodec.layout(of: original)
        // A newer writer's sections: plain, with an unknown flag, with the compressed flag on bytes
        // that are not zlib at all, and empty.
        let extra = [
            Craft.section(tag: 6, body: Array("new data".utf8)),
            Craft.section(tag: 0x7FFF, flags: 0xFFFE, body: [0, 1, 2, 255]),
            Craft.section(tag: 0x0100, flags: 0x0001, body: [9, 9, 9, 9, 9, 9]),
            Craft.section(tag: 6, body: []),
        ]
        let newer =
            Craft.withSectionCount(original, UInt32(header.sectionCount + extra.count)) + extra.flatMap { $0 }
        var decoded = try RecordCodec().decode(newer)
        #expect(decoded.preservedSections.count == 4)
        #expect(
            decoded.preservedSections[0]
                == PreservedSection(tag: 6, flags: 0, payload: Array("new data".utf8)))
        #expect(
            decoded.preservedSections[1]
                == PreservedSection(tag: 0x7FFF, flags: 0xFFFE, payload: [0, 1, 2, 255]))
        #expect(
            decoded.preservedSections[2]
                == PreservedSection(tag: 0x0100, flags: 1, payload: [9, 9, 9, 9, 9, 9]))
        // Re-encoding gives exactly the newer writer's bytes (its sections followed the known ones).
        #expect(RecordCodec().encode(decoded, fileID: testFileID) == newer)
        // An older writer changes a known part: the unknown sections are still there, unchanged.
        try decoded.upsert(
            Transaction(
                id: "zzz", time: .init(millisecondsSince1970: 1_800_000_000_000),
                amount: Money(minorUnits: 1, currency: CurrencyCode("EUR")!)))
        let rewritten = RecordCodec().encode(decoded, fileID: testFileID)
        #expect(Array(rewritten.suffix(extra.joined().count)) == extra.flatMap { $0 })
        #expect(try RecordCodec().decode(rewritten).preservedSections == decoded.preservedSections)
    }

    @Test func unknownSectionsBetweenKnownOnesMoveAfterThem() throws {
        let tx = Craft.section(tag: 1, body: Craft.transactionsPayload())
        let unknown = Craft.section(tag: 9, body: [42])
        let prefs = Craft.section(tag: 3, body: [1] + Craft.string("k") + Craft.string("v") + [0])
        let record = try RecordCodec().decode(Craft.file([unknown, tx, prefs]))
        #expect(record.preservedSections == [PreservedSection(tag: 9, flags: 0, payload: [42])])
        let rewritten = RecordCodec().encode(record, fileID: testFileID)
        #expect(try RecordCodec.layout(of: rewritten).sections.map(\.tag) == [1, 3, 9])
        #expect(try RecordCodec().decode(rewritten) == record)
    }

    @Test func encoderSkipsSectionsNoReaderWouldPreserve() throws {
        var record = UserRecord(userID: "u", createdAt: .init(millisecondsSince1970: 0))
        record.preservedSections = [
            PreservedSection(tag: 0, flags: 0, payload: [1]),
            PreservedSection(tag: 1, flags: 0, payload: [1]),
            PreservedSection(tag: 0x8000, flags: 0, payload: [1]),
            PreservedSection(tag: 77, flags: 3, payload: [1]),
        ]
        let decoded = try RecordCodec().decode(RecordCodec().encode(record, fileID: testFileID))
        #expect(decoded.preservedSections == [PreservedSection(tag: 77, flags: 3, payload: [1])])
    }
}
