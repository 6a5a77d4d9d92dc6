import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

/// `JSONSizeBound` counts at most the bytes of the text `RecordJSON` writes, close to it, and stops
/// at its limit; `RecordJSON.encode` refuses a text over its limit before writing any of it.
@Suite struct JSONSizeBoundTests {
    @Test func theCountIsAtMostTheTextAndCloseToIt() throws {
        for seed in UInt64(1)...40 {
            let record = RecordGenerator.record(seed: seed, isoSafe: true, maxItems: 30)
            for pretty in [false, true] {
                let size = try RecordJSON.encode(record, pretty: pretty).utf8.count
                try JSONSizeBound.check(record, limit: size)
                if !pretty {
                    #expect(throws: AnswerTooLargeError.self, "seed \(seed)") {
                        try JSONSizeBound.check(record, limit: size * 3 / 4)
                    }
                }
            }
        }
    }

    /// A record of `rows` transactions whose merchant and metadata key are `shared` (one string,
    /// as a decoded file's rows share their dictionary's strings), with metadata value `value`.
    static func record(rows: Int, sharing shared: String, value: String) throws -> UserRecord {
        var record = UserRecord(
            userID: "u", revision: 1, createdAt: Timestamp(millisecondsSince1970: 0),
            updatedAt: Timestamp(millisecondsSince1970: 0))
        for i in 0..<rows {
            var t = Transaction(
                id: "t\(i)", time: Timestamp(millisecondsSince1970: Int64(i)),
                amount: Money(minorUnits: 1, currency: CurrencyCode("EUR")!))
            t.merchant = shared
            t.metadata = ExactDictionary([shared: value])
            try record.upsert(t)
        }
        return record
    }

    /// Escapes count: a string of control characters is written six bytes a byte (`\u0001`),
    /// quotes, backslashes and line breaks two; the count follows the text within a few bytes.
    @Test func escapesAreCounted() throws {
        for shared in [
            String(repeating: "\u{01}", count: 4096), String(repeating: "\"\\\n\t", count: 1024),
            String(repeating: "é\u{1F}/", count: 1024),
        ] {
            var record = try Self.record(rows: 3, sharing: shared, value: shared)
            for equivalentKeys in [false, true] {
                if equivalentKeys {
                    // Two canonically equivalent keys: every key of the object stands under a
                    // placeholder while the encoder writes, and is put back escaped.
                    var t = record.transactions.array[0]
                    t.id = "t-equivalent"
                    t.metadata = ExactDictionary(
                        dictionaryLiteral: (shared + "\u{E9}", "v"), (shared + "e\u{301}", "v"))
                    try record.upsert(t)
                }
                let size = try RecordJSON.encode(record, pretty: false).utf8.count
                try JSONSizeBound.check(record, limit: size)
                #expect(throws: AnswerTooLargeError.self, "\(equivalentKeys)") {
                    try JSONSizeBound.check(record, limit: size - size / 100)
                }
            }
        }
    }

    @Test func aTextOverTheLimitIsRefusedBeforeItIsWritten() throws {
        let record = try Self.record(rows: 200, sharing: String(repeating: "x", count: 1 << 20), value: "v")
        #expect {
            try RecordJSON.encode(record)
        } throws: { error in
            guard let e = error as? AnswerTooLargeError else { return false }
            return e.limit == RecordJSON.maximumTextBytes && e.atLeast > e.limit && e.kind == .invalidInput
                && e.description.contains("a part at a time")
        }
    }

    /// The limit is on the text, whatever the file: 20 rows naming one string of 64 KiB make 2.6 MB
    /// of text, refused under a limit of 1 MiB and written under the default.
    @Test func theLimitBoundsTheTextNotTheFile() throws {
        let shared = String(repeating: "y", count: 64 << 10)
        let record = try Self.record(rows: 20, sharing: shared, value: shared)
        #expect(throws: AnswerTooLargeError.self) {
            try RecordJSON.encode(record, pretty: false, marker: RecordJSON.newMarker, limit: 1 << 20)
        }
        let text = try RecordJSON.encode(record, pretty: false)
        #expect(text.utf8.count > 60 * (64 << 10))
        #expect(try RecordJSON.decode(UserRecord.self, from: text) == record)
    }
}
