import CarbonModel
import CarbonStoreTestSupport
import Testing

@testable import CarbonFormat

/// A footprint's transaction id that is its transaction's id is decoded as that transaction's
/// string: one copy in memory, no allocation.
@Suite struct SharedIDTests {
    /// Whether two strings are the same storage (not merely equal).
    static func sameStorage(_ a: String, _ b: String) -> Bool {
        var a = a
        var b = b
        return a.withUTF8 { pa in b.withUTF8 { pb in pa.baseAddress == pb.baseAddress } }
    }

    static func transaction(_ id: String, _ ms: Int64 = 1) -> Transaction {
        Transaction(
            id: id, time: Timestamp(millisecondsSince1970: ms),
            amount: Money(minorUnits: 100, currency: CurrencyCode("EUR")!))
    }

    static func footprint(_ id: String, of transactionID: String?) -> Footprint {
        Footprint(
            id: id, transactionID: transactionID, co2e: CO2e(milligrams: 5), category: "food",
            methodology: "m", calculatedAt: Timestamp(millisecondsSince1970: 1))
    }

    @Test func aDecodedWorkloadHoldsEachTransactionIDOnce() throws {
        let record = RecordGenerator.workload(.w1, seed: 31)
        let decoded = try RecordCodec().decode(RecordCodec().encode(record))
        #expect(decoded == record)
        let transactions = decoded.transactions.array
        let ids = Dictionary(transactions.map { ($0.id, $0.id) }, uniquingKeysWith: { a, _ in a })
        var shared = 0
        var linked = 0
        for f in decoded.footprints {
            guard let t = f.transactionID, let id = ids[t] else { continue }
            linked += 1
            if Self.sameStorage(t, id) { shared += 1 }
        }
        #expect(linked >= 900)
        #expect(
            shared == linked,
            "\(shared) of \(linked) footprint transaction ids share their transaction's string")
    }

    @Test func idsOutOfOrderMissingOrUnknownDecodeAsWritten() throws {
        // Long ids (not small strings), so that sharing is visible as the same storage.
        let t = (0..<6).map { Self.transaction("transaction-number-\($0)-of-six", Int64($0)) }
        var record = UserRecord(userID: "u", createdAt: Timestamp(millisecondsSince1970: 0))
        record.transactions = ItemList(t)
        // In order, one skipped (t2), one out of order (t0 again), unknown, nil, a prefix of an id,
        // then in order again.
        let refs: [String?] = [
            t[0].id, t[1].id, t[3].id, t[0].id, "transaction-number-9-of-six", nil, "transaction-number-4",
            t[4].id,
            t[5].id,
        ]
        record.footprints = ItemList(
            refs.enumerated().map { Self.footprint("footprint-\($0.offset)", of: $0.element) })
        for codec in [RecordCodec(options: .init(compression: .none)), RecordCodec()] {
            let decoded = try codec.decode(codec.encode(record))
            #expect(decoded == record)
            let f = decoded.footprints.array
            let d = decoded.transactions.array
            #expect(Self.sameStorage(f[0].transactionID!, d[0].id))
            #expect(Self.sameStorage(f[1].transactionID!, d[1].id))
            #expect(Self.sameStorage(f[2].transactionID!, d[3].id))  // one transaction skipped
            #expect(!Self.sameStorage(f[3].transactionID!, d[0].id))  // behind: decoded on its own
            #expect(f[5].transactionID == nil)
            #expect(Self.sameStorage(f[7].transactionID!, d[4].id))
            #expect(Self.sameStorage(f[8].transactionID!, d[5].id))
        }
    }

    @Test func aCutTransactionIDIsTheSameErrorAsBefore() throws {
        // A footprints section whose only row's transaction id claims more bytes than are left.
        var record = UserRecord(userID: "u", createdAt: Timestamp(millisecondsSince1970: 0))
        record.transactions = ItemList([Self.transaction("abc", 1)])
        record.footprints = ItemList([Self.footprint("f", of: "abc")])
        let bytes = RecordCodec(options: .init(compression: .none)).encodeVersion1(record)
        // Find the footprint's transaction id (length byte 4 = 3 + 1, then "abc") and claim 99 bytes.
        let fpStart = try RecordCodec.layout(of: bytes).sections.first { $0.tag == SectionTag.footprints }!
            .offset
        var damaged = bytes
        let at = try #require(
            (fpStart..<(damaged.count - 4)).first {
                damaged[$0] == 4 && Array(damaged[($0 + 1)...($0 + 3)]) == Array("abc".utf8)
            })
        damaged[at] = 100
        let e = Craft.error(repairingChecksums(damaged))
        #expect(e?.kind == .lengthBeyondEnd)
        #expect(e?.offset == at)
        #expect(e?.detail.hasPrefix("footprint transaction id length 99 exceeds the") == true)
    }
}
