import CarbonModel
import Testing

@testable import CarbonFormat

/// The worked example of docs/FORMAT.md. If this test fails, the format changed: that needs a new
/// format version (or a new section tag), not a new expectation.
@Suite struct GoldenTests {
    static let example: UserRecord = {
        let eur = CurrencyCode("EUR")!
        let t0 = Timestamp(iso8601: "2026-01-01T00:00:00Z")!
        let t1 = Timestamp(iso8601: "2026-01-01T00:00:01.500Z")!
        return UserRecord(
            userID: "alice", revision: 3, createdAt: t0, updatedAt: t1,
            transactions: [
                Transaction(
                    id: "t1", time: t0, amount: Money(minorUnits: 1250, currency: eur), merchant: "Café",
                    mcc: 5812,
                    category: "food"),
                Transaction(
                    id: "t2", time: t1, amount: Money(minorUnits: -300, currency: eur), merchant: "Café",
                    description: "refund", metadata: ["k": "v"]),
            ],
            responses: [QuestionResponse(questionID: "diet", answer: .boolean(true), answeredAt: t0)],
            preferences: ["units": Preference(value: "metric", updatedAt: t1)])
    }()

    static let exampleHex = """
        894353540d0a1a0a01000000030000000000000000a8da769b010000dcadda769b0100000300000005000000\
        616c696365c3cdf788010000003e00000002050345555205436166c3a904666f6f64016b0176027431027432\
        80a0d5edee66b817c413d70400000202b52d00030000000007726566756e640001030472400569020000000e\
        00000001046469657480a0d5edee66020123417e6c03000000140000000105756e697473066d6574726963b8\
        b7d5edee6625ebfda0
        """

    @Test func exampleEncodesToTheDocumentedBytes() throws {
        let bytes = RecordCodec(options: .init(compression: .none)).encodeVersion1(Self.example)
        #expect(bytes.hex == Self.exampleHex)
        #expect(try RecordCodec().decode(bytes) == Self.example)
    }
}

/// The version-2 worked example of docs/FORMAT.md (§14): the same record as a version-2 snapshot
/// with a fixed file id, then one change frame.
@Suite struct GoldenVersion2Tests {
    static let fileID = WriteID(hex: "000102030405060708090a0b0c0d0e0f")!
    static let frameID = WriteID(hex: "101112131415161718191a1b1c1d1e1f")!

    static let changed: UserRecord = {
        var r = GoldenTests.example
        let t2 = Timestamp(iso8601: "2026-01-01T00:00:02.500Z")!
        r.revision = 4
        r.updatedAt = t2
        r.transactions.append(
            Transaction(
                id: "t3", time: t2, amount: Money(minorUnits: 420, currency: CurrencyCode("EUR")!),
                merchant: "Café"))
        r.preferences["units"] = nil
        r.preferences["lang"] = Preference(value: "fr", updatedAt: t2)
        return r
    }()

    static let snapshotHex = """
        894353540d0a1a0a02000000000102030405060708090a0b0c0d0e0f030000000000000000a8da769b0100\
        00dcadda769b0100000300000005000000616c696365aedfa7a4010000003e000000
        """

    static let frameHex = """
        8943465286000000000102030405060708090a0b0c0d0e0f040000000000000000a8da769b010000c4b1da769b01\
        0000010020000000020001020345555205436166c3a902743388c7d5edee66c806000200000000000300160000\
        000105756e69747301046c616e6702667288c7d5edee66101112131415161718191a1b1c1d1e1fa7ded00b
        """

    @Test func exampleEncodesToTheDocumentedBytes() throws {
        let codec = RecordCodec(options: .init(compression: .none))
        let (snapshot, layout) = try codec.encodeSnapshot(GoldenTests.example, fileID: Self.fileID)
        let frame = try #require(
            codec.encodeChange(
                from: GoldenTests.example, to: Self.changed, appendingTo: layout, id: Self.frameID))
        #expect(snapshot.hex.hasPrefix(Self.snapshotHex))
        // The version-1 example with the file id inserted at offset 12 and its header CRC renewed.
        let v1 = codec.encodeVersion1(GoldenTests.example)
        #expect(Array(snapshot[..<12]) == Array(v1[..<8]) + [2, 0, 0, 0])
        #expect(Array(snapshot[12..<28]) == Self.fileID.bytes)
        #expect(Array(snapshot[28..<65]) == Array(v1[12..<49]))
        #expect(Array(snapshot[69...]) == Array(v1[53...]))
        #expect(frame.bytes.hex == Self.frameHex)
        let (record, decodedLayout) = try codec.decodeFile(snapshot + frame.bytes)
        #expect(record == Self.changed)
        #expect(decodedLayout == layout.appending(frame))
        #expect(decodedLayout.lastID == Self.frameID && decodedLayout.validLength == 201 + frame.bytes.count)
    }
}
