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
        let bytes = RecordCodec(options: .init(compression: .none)).encode(Self.example)
        #expect(bytes.hex == Self.exampleHex)
        #expect(try RecordCodec().decode(bytes) == Self.example)
    }
}
