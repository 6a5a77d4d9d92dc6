import CarbonModel
import CarbonStore
import CarbonStoreTestSupport
import Foundation
import Testing

@Suite struct RecordJSONTests {
    @Test func generatedRecordsRoundTripThroughJSON() throws {
        let encoder = JSONEncoder()
        let decoder = JSONDecoder()
        var clashing = 0
        for seed in UInt64(0)..<150 {
            let record = RecordGenerator.record(seed: seed, isoSafe: true)
            // RecordJSON keeps every key, those that are canonically equivalent (the generator
            // makes some) included.
            for pretty in [true, false] {
                let json = try RecordJSON.encode(record, pretty: pretty)
                #expect(try RecordJSON.decode(UserRecord.self, from: json) == record, "seed \(seed)")
            }
            // Foundation's coders alone key objects by String: such keys are refused, never merged.
            let keySets = [record.preferences.keys] + record.transactions.map(\.metadata.keys)
            if keySets.contains(where: { Set($0).count != $0.count }) {
                #expect(throws: EncodingError.self, "seed \(seed)") { try encoder.encode(record) }
                clashing += 1
                continue
            }
            let data = try encoder.encode(record)
            #expect(try decoder.decode(UserRecord.self, from: data) == record, "seed \(seed)")
        }
        #expect(clashing > 0 && clashing < 30)
    }

    @Test func workloadRoundTripsThroughJSON() throws {
        let record = RecordGenerator.workload(.w1, seed: 2)
        #expect(try JSONDecoder().decode(UserRecord.self, from: JSONEncoder().encode(record)) == record)
    }

    @Test func answersKeepTheirKind() throws {
        let answers: [Answer] = [
            .number(1), .number(0), .number(-0.0), .number(2.5), .boolean(true), .boolean(false),
            .text("true"), .text("1"),
            .text(""), .choices([]), .choices(["a"]),
        ]
        for a in answers {
            let back = try JSONCoding.decode(Answer.self, JSONCoding.encode(a))
            #expect(back == a, "\(a)")
        }
        #expect(throws: DecodingError.self) { try JSONCoding.decode(Answer.self, "{}") }
        #expect(throws: DecodingError.self) { try JSONCoding.decode(Answer.self, "[1]") }
    }

    @Test func answerParsing() {
        #expect(Answer.parse("true") == .boolean(true))
        #expect(Answer.parse("false") == .boolean(false))
        #expect(Answer.parse("3.5") == .number(3.5))
        #expect(Answer.parse("inf") == .text("inf"))
        #expect(Answer.parse("nan") == .text("nan"))
        #expect(Answer.parse("a,b", asChoices: true) == .choices(["a", "b"]))
        #expect(Answer.parse("hello") == .text("hello"))
    }

    @Test func jsonFieldNames() throws {
        let t0 = Timestamp(millisecondsSince1970: 0)
        let tx = Transaction(
            id: "t", time: t0, amount: Money(minorUnits: 1, currency: CurrencyCode("EUR")!), mcc: 5411,
            accountID: "a")
        let json = try JSONCoding.encode(tx)
        #expect(
            json
                == #"{"accountId":"a","amount":{"amount":"0.01","currency":"EUR"},"id":"t","mcc":5411,"time":"1970-01-01T00:00:00.000Z"}"#
        )
        #expect(throws: DecodingError.self) {
            try JSONCoding.decode(Transaction.self, json.replacingOccurrences(of: "5411", with: "10000"))
        }
        let record = try JSONCoding.decode(UserRecord.self, #"{"userId":"u","createdAt":"2026-01-01"}"#)
        #expect(record.revision == 0)
        #expect(record.updatedAt == record.createdAt)
        #expect(record.transactions.isEmpty && record.preferences.isEmpty)
    }

    @Test func generatorIsDeterministicAndKeepsInvariants() {
        for seed in UInt64(0)..<100 {
            let r = RecordGenerator.record(seed: seed)
            #expect(r == RecordGenerator.record(seed: seed))
            #expect(
                zip(r.transactions, r.transactions.dropFirst()).allSatisfy {
                    ($0.time, $0.id) <= ($1.time, $1.id)
                })
            #expect(Set(r.transactions.map(\.id)).count == r.transactions.count)
            #expect(zip(r.responses, r.responses.dropFirst()).allSatisfy { $0.questionID < $1.questionID })
            #expect(Set(r.footprints.map(\.id)).count == r.footprints.count)
            #expect(Set(r.savings.map(\.id)).count == r.savings.count)
            #expect(r.transactions.allSatisfy { ($0.mcc ?? 0) <= 9999 })
        }
        #expect(RecordGenerator.record(seed: 7).transactions.isEmpty)  // every seventh is empty
        let w1 = RecordGenerator.workload(.w1, seed: 1)
        #expect(w1 == RecordGenerator.workload(.w1, seed: 1))
        #expect(w1.transactions.count == 1000)
        #expect(Set(w1.transactions.compactMap(\.merchant)).count > 250)
        #expect(Set(w1.transactions.compactMap(\.mcc)).count <= 40)
        #expect(Set(w1.transactions.map(\.amount.currency)).count == 2)
        #expect(
            (w1.responses.count, w1.preferences.count, w1.footprints.count, w1.savings.count) == (
                40, 20, 1000, 50
            ))
        #expect(
            zip(w1.transactions, w1.transactions.dropFirst()).allSatisfy {
                ($0.time, $0.id) <= ($1.time, $1.id)
            })
        #expect(zip(w1.responses, w1.responses.dropFirst()).allSatisfy { $0.questionID < $1.questionID })
    }
}

@Suite struct UpsertTests {
    let t0 = Timestamp(millisecondsSince1970: 1_000)
    let eur = CurrencyCode("EUR")!

    func tx(_ id: String, _ ms: Int64, _ cents: Int64 = 100) -> Transaction {
        Transaction(
            id: id, time: Timestamp(millisecondsSince1970: ms),
            amount: Money(minorUnits: cents, currency: eur))
    }

    @Test func transactionsAreIdempotentAndSorted() throws {
        var r = UserRecord(userID: "u", createdAt: t0)
        #expect(try r.upsert(tx("b", 20)) == .inserted)
        #expect(try r.upsert(tx("b", 20)) == .unchanged)
        #expect(try r.upsert(tx("a", 30)) == .inserted)
        #expect(try r.upsert(tx("c", 10)) == .inserted)
        #expect(try r.upsert(tx("a2", 20)) == .inserted)
        #expect(r.transactions.map(\.id) == ["c", "a2", "b", "a"])
        let before = r
        #expect(throws: IDConflictError.self) { try r.upsert(tx("b", 20, 999)) }
        #expect(r == before)
        #expect(try r.upsert(tx("b", 40, 999), replace: true) == .replaced)
        #expect(r.transactions.map(\.id) == ["c", "a2", "a", "b"])
        #expect(r.transactions.count == 4)
        do {
            try r.upsert(tx("c", 10, 5))
        } catch {
            #expect(
                error.description
                    == "transaction 'c' of user 'u' already exists with different content; replace it explicitly or choose another id"
            )
        }
    }

    @Test func transactionsArrivingLateGoWhereATimeOrderedScanPutsThem() throws {
        // The place of an insert is searched from the end in doubling steps; it must be the place
        // that a scan from the end finds, for transactions late by any number of places, ties of
        // time broken by id.
        var r = UserRecord(userID: "u", createdAt: t0)
        var model: [Transaction] = []
        var random = SystemRandomNumberGenerator()
        for k in 0..<1500 {
            // Mostly in order, some late by a little, some by a lot, some at equal times.
            let ms: Int64 =
                switch k % 5 {
                case 0: Int64(k) * 10 - Int64.random(in: 0...20, using: &random)
                case 1: Int64.random(in: 0...Int64(k) * 10, using: &random)
                case 2: Int64((k / 10) * 100)
                default: Int64(k) * 10
                }
            let t = tx("id-\(Int.random(in: 0..<1_000_000, using: &random))-\(k)", ms)
            var i = model.endIndex
            while i > 0,
                t.time < model[i - 1].time
                    || (t.time == model[i - 1].time && t.id.isBytewiseLess(than: model[i - 1].id))
            {
                i -= 1
            }
            model.insert(t, at: i)
            #expect(try r.upsert(t) == .inserted)
        }
        #expect(r.transactions.map(\.id) == model.map(\.id))
    }

    @Test func responsesPreferencesFootprintsSavings() {
        var r = UserRecord(userID: "u", createdAt: t0)
        #expect(
            r.answer(QuestionResponse(questionID: "m", answer: .boolean(true), answeredAt: t0)) == .inserted)
        #expect(r.answer(QuestionResponse(questionID: "a", answer: .number(1), answeredAt: t0)) == .inserted)
        #expect(r.answer(QuestionResponse(questionID: "z", answer: .text("x"), answeredAt: t0)) == .inserted)
        #expect(
            r.answer(QuestionResponse(questionID: "m", answer: .boolean(true), answeredAt: t0)) == .unchanged)
        #expect(
            r.answer(QuestionResponse(questionID: "m", answer: .boolean(false), answeredAt: t0)) == .replaced)
        #expect(r.responses.map(\.questionID) == ["a", "m", "z"])

        #expect(r.setPreference("units", value: "metric", at: t0) == .inserted)
        #expect(
            r.setPreference("units", value: "metric", at: Timestamp(millisecondsSince1970: 5)) == .unchanged)
        #expect(r.preferences["units"]?.updatedAt == t0)
        #expect(
            r.setPreference("units", value: "imperial", at: Timestamp(millisecondsSince1970: 5)) == .replaced)
        let removed = r.removePreference("units")
        let removedAgain = r.removePreference("units")
        #expect(removed)
        #expect(!removedAgain)

        let f = Footprint(
            id: "f", co2e: CO2e(milligrams: 1), category: "c", methodology: "m", calculatedAt: t0)
        #expect(r.upsert(f) == .inserted)
        #expect(r.upsert(f) == .unchanged)
        var f2 = f
        f2.co2e = CO2e(milligrams: 2)
        #expect(r.upsert(f2) == .replaced)
        #expect(r.footprints == [f2])

        let s = Saving(
            id: "s", actionID: "a", co2e: CO2e(milligrams: 1), period: Period(start: t0, end: t0),
            recordedAt: t0)
        #expect(r.upsert(s) == .inserted)
        #expect(r.upsert(s) == .unchanged)
        var s2 = s
        s2.moneySaved = Money(minorUnits: 1, currency: eur)
        #expect(r.upsert(s2) == .replaced)
        #expect(r.savings == [s2])
    }
}
