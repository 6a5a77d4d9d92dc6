import CarbonFormat
import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

/// Store-level probes of the lists that share chunks between the cached record and its changed
/// copies: a merchant code no reader accepts, put anywhere by any list operation, is refused and
/// nothing is written; good changes around it commit exactly.
@Suite struct ItemListStoreTests {
    /// Every file below `dir` with its bytes.
    static func files(_ dir: TemporaryDirectory) throws -> [String: Data] {
        var out: [String: Data] = [:]
        for f in dir.allFiles() { out[f] = try Data(contentsOf: URL(fileURLWithPath: dir.path + "/" + f)) }
        return out
    }

    static func freshStore(_ dir: TemporaryDirectory) throws -> Store {
        var options = StoreOptions()
        options.cacheBytes = 0
        return Store(storage: try PathStorage(root: dir.path), locks: NoLockService(), options: options)
    }

    /// The ways a mutation can put a bad code in the transactions.
    static let ways = 0..<10

    static func putBad(_ way: Int, into r: inout UserRecord) throws {
        let n = r.transactions.count
        var bad = r.transactions[n / 2]
        bad.mcc = 10_000
        switch way {
        case 0: r.transactions.append(bad)
        case 1: r.transactions.insert(bad, at: 3)
        case 2: r.transactions[n - 1] = bad
        case 3: r.transactions[n / 3].mcc = UInt16.max
        case 4: r.transactions.replaceSubrange(5..<9, with: [bad, bad])
        case 5: try r.upsert(bad, replace: true)
        case 6:
            bad.id = "brand-new"
            try r.upsert(bad)
        case 7:
            r.transactions[0] = bad
            r.transactions.sort { $0.id.isBytewiseLess(than: $1.id) }
        case 8:
            // A good change first, then the bad one, in the same mutation.
            r.transactions.removeLast()
            r.transactions[r.transactions.count / 2].mcc = 10_001
        default:
            r.transactions.removeAll { $0.id.hasSuffix("7") }
            r.transactions.insert(contentsOf: [r.transactions[0], bad], at: r.transactions.count)
        }
    }

    @Test(arguments: ways)
    func aBadMerchantCodePutAnyWayIsRefusedAndNothingIsWritten(way: Int) async throws {
        let dir = try TemporaryDirectory("itemlist-mcc")
        defer { dir.remove() }
        let store = Store(storage: try PathStorage(root: dir.path), locks: InProcessLockService())
        let workload = RecordGenerator.workload(.w2, seed: UInt64(way) + 3)
        try await store.update("alice") { $0.transactions = workload.transactions }
        // A second write so that the cached record's lists are the decoded or cut ones.
        try await store.update("alice") { $0.transactions[2] = $0.transactions[2] }
        try await store.update("alice") {
            try $0.upsert(
                Transaction(
                    id: "zz-last", time: Timestamp(millisecondsSince1970: Int64.max),
                    amount: Money(minorUnits: 1, currency: CurrencyCode("EUR")!), mcc: 5411))
        }
        let before = try await store.get("alice")
        let filesBefore = try Self.files(dir)
        await #expect(throws: InvalidRequestError.self) {
            try await store.update("alice") { try Self.putBad(way, into: &$0) }
        }
        #expect(try Self.files(dir) == filesBefore, "way \(way): a file changed")
        #expect(try await store.get("alice") == before)
        #expect(try await Self.freshStore(dir).get("alice") == before)
        // The store still writes good changes exactly.
        let result = try await store.update("alice") { $0.transactions.removeFirst() }
        let expected = try await Self.freshStore(dir).get("alice")
        #expect(result.record == expected)
        #expect(expected.transactions.array == Array(before.transactions.dropFirst()))
    }

    /// Concurrent calls committed together: the one with a bad code fails alone; the others commit,
    /// and the file holds exactly what they answered.
    @Test func aBadCodeInABatchFailsOnlyItsCall() async throws {
        let dir = try TemporaryDirectory("itemlist-batch")
        defer { dir.remove() }
        let store = Store(storage: try PathStorage(root: dir.path), locks: InProcessLockService())
        let workload = RecordGenerator.workload(.w2, seed: 9)
        try await store.update("alice") { $0.transactions = workload.transactions }
        let outcomes = await withTaskGroup(of: (Int, Bool).self) { group in
            for k in 0..<12 {
                group.addTask {
                    do {
                        try await store.update("alice") { r in
                            if k % 4 == 3 {
                                try Self.putBad(k % 10, into: &r)
                            } else {
                                var t = r.transactions[k]
                                t.id = "added-\(k)"
                                t.mcc = 1234
                                try r.upsert(t)
                            }
                        }
                        return (k, true)
                    } catch {
                        return (k, false)
                    }
                }
            }
            var out: [Int: Bool] = [:]
            for await (k, ok) in group { out[k] = ok }
            return out
        }
        for k in 0..<12 { #expect(outcomes[k] == (k % 4 != 3), "call \(k)") }
        let onDisk = try await Self.freshStore(dir).get("alice")
        #expect(try await store.get("alice") == onDisk)
        #expect(onDisk.transactions.allSatisfy { ($0.mcc ?? 0) <= 9999 })
        #expect(onDisk.transactions.filter { $0.id.hasPrefix("added-") }.count == 9)
        #expect(onDisk.transactions.count == workload.transactions.count + 9)
    }

    /// An update costs what it changes: the record an update commits shares every chunk of
    /// elements that its change did not touch with the record before it, from the cache, on
    /// `path:` and in memory, for a user of 20,000 transactions (W2), after a read of the whole
    /// file as after an append.
    @Test(arguments: ["path", "memory"])
    func anUpdateSharesWhatItDidNotChangeWithTheRecordBefore(backend: String) async throws {
        let dir = try TemporaryDirectory("itemlist-shared")
        defer { dir.remove() }
        let store = try await StoreFactory().makeStore(backend == "path" ? "path:" + dir.path : "memory:")
        let w2 = RecordGenerator.workload(.w2, seed: 7)
        var before = try await store.update("heavy") { r in
            r.transactions = w2.transactions
            r.footprints = w2.footprints
        }.record
        let n = w2.transactions.count
        let eur = CurrencyCode("EUR")!
        for k in 0..<5 {
            // An append (the common case), then a transaction in the middle of the time order.
            let time =
                k % 2 == 0
                ? Timestamp(millisecondsSince1970: 4_000_000_000_000 + Int64(k))
                : before.transactions[n / 2].time
            let t = Transaction(id: "shared-\(k)", time: time, amount: Money(minorUnits: 100, currency: eur))
            let after = try await store.update("heavy") { r in try r.upsert(t) }.record
            let shared = before.transactions.sharedEnds(with: after.transactions)
            #expect(after.transactions.count == before.transactions.count + 1)
            // Everything but the chunk the new transaction went into (at most 2 x 64 rows).
            #expect(
                shared.prefix + shared.suffix >= before.transactions.count - 128, "update \(k): \(shared)")
            // The footprints were not touched at all.
            let footprints = before.footprints.sharedEnds(with: after.footprints)
            #expect(footprints.prefix == n, "update \(k): footprints \(footprints)")
            #expect(try await store.get("heavy") == after)
            before = after
        }
    }
}
