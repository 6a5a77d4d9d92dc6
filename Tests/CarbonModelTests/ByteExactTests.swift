import CarbonModel
import Foundation
import Testing

/// Canonically equivalent spellings are different strings to the model, as they are to the format:
/// é as one scalar (NFC) and as e + U+0301 (NFD).
@Suite struct ByteExactTests {
    static let nfc = "caf\u{E9}"
    static let nfd = "cafe\u{301}"
    let t0 = Timestamp(millisecondsSince1970: 1_000)
    let eur = CurrencyCode("EUR")!

    @Test func theTwoSpellingsAreEqualToSwiftButNotByteEqual() {
        // The premise of every test below.
        #expect(Self.nfc == Self.nfd)
        #expect(!Self.nfc.isByteEqual(to: Self.nfd))
        #expect(ExactString(Self.nfc) != ExactString(Self.nfd))
        #expect(Set([ExactString(Self.nfc), ExactString(Self.nfd)]).count == 2)
        #expect(ExactString(Self.nfd) < ExactString(Self.nfc))  // "e" (0x65) before 0xC3
    }

    func record() -> UserRecord { UserRecord(userID: "u", createdAt: t0) }

    func txn(_ id: String, merchant: String? = nil, metadata: ExactDictionary<String> = [:]) -> Transaction {
        Transaction(
            id: id, time: t0, amount: Money(minorUnits: 100, currency: eur), merchant: merchant,
            metadata: metadata)
    }

    @Test func transactionIDsInBothSpellingsAreTwoTransactions() throws {
        var r = record()
        #expect(try r.upsert(txn(Self.nfc)) == .inserted)
        #expect(try r.upsert(txn(Self.nfd)) == .inserted)
        #expect(r.transactions.count == 2)
        #expect(try r.upsert(txn(Self.nfd)) == .unchanged)
        // The same time: ordered by the ids' bytes.
        #expect(r.transactions.map { Array($0.id.utf8) } == [Array(Self.nfd.utf8), Array(Self.nfc.utf8)])
        #expect(r.transaction(id: Self.nfc).map { Array($0.id.utf8) } == Array(Self.nfc.utf8))
        #expect(r.transaction(id: Self.nfd).map { Array($0.id.utf8) } == Array(Self.nfd.utf8))
    }

    @Test func aRespellingOfContentIsAChange() throws {
        var r = record()
        try r.upsert(txn("t", merchant: Self.nfc))
        // Same id, merchant re-spelled: different content, so a conflict, and a replace replaces.
        #expect(throws: IDConflictError.self) { try r.upsert(txn("t", merchant: Self.nfd)) }
        #expect(try r.upsert(txn("t", merchant: Self.nfd), replace: true) == .replaced)
        #expect(r.transactions[0].merchant.map { Array($0.utf8) } == Array(Self.nfd.utf8))
    }

    @Test func recordsDifferingOnlyInSpellingAreNotEqual() throws {
        // The store skips the write when the mutated record == the one it read.
        func check(_ change: (inout UserRecord) throws -> Void, _ what: Comment) throws {
            var a = record()
            a.userID = Self.nfc
            try a.upsert(txn("t", merchant: Self.nfc, metadata: ["k": Self.nfc, Self.nfc: "v"]))
            a.answer(QuestionResponse(questionID: "q", answer: .text(Self.nfc), answeredAt: t0))
            a.answer(QuestionResponse(questionID: "c", answer: .choices([Self.nfc]), answeredAt: t0))
            a.setPreference("p", value: Self.nfc, at: t0)
            a.setPreference(Self.nfc, value: "v", at: t0)
            a.upsert(
                Footprint(
                    id: "f", transactionID: Self.nfc, co2e: CO2e(milligrams: 1), category: Self.nfc,
                    methodology: Self.nfc, calculatedAt: t0))
            a.upsert(
                Saving(
                    id: "s", actionID: Self.nfc, co2e: CO2e(milligrams: 1),
                    period: Period(start: t0, end: t0), recordedAt: t0))
            var b = a
            #expect(a == b)
            try change(&b)
            #expect(a != b, what)
        }
        try check({ $0.userID = Self.nfd }, "user id")
        try check({ $0.transactions[0].merchant = Self.nfd }, "merchant")
        try check({ $0.transactions[0].category = Self.nfd }, "category")
        try check({ $0.transactions[0].description = Self.nfd }, "description")
        try check({ $0.transactions[0].accountID = Self.nfd }, "account")
        try check({ $0.transactions[0].metadata["k"] = Self.nfd }, "metadata value")
        try check(
            {
                $0.transactions[0].metadata.removeValue(forKey: Self.nfc)
                $0.transactions[0].metadata[Self.nfd] = "v"
            }, "metadata key")
        try check(
            {
                $0.preferences.removeValue(forKey: Self.nfc)
                $0.preferences[Self.nfd] = Preference(value: "v", updatedAt: t0)
            }, "preference key")
        try check({ $0.responses[1].answer = .text(Self.nfd) }, "text answer")
        try check({ $0.responses[0].answer = .choices([Self.nfd]) }, "choice")
        try check({ $0.setPreference("p", value: Self.nfd, at: t0) }, "preference value")
        try check({ $0.footprints[0].transactionID = Self.nfd }, "footprint transaction")
        try check({ $0.footprints[0].category = Self.nfd }, "footprint category")
        try check({ $0.footprints[0].methodology = Self.nfd }, "methodology")
        try check({ $0.savings[0].actionID = Self.nfd }, "action")
    }

    @Test func setPreferenceReportsARespelledValueAsAChange() {
        var r = record()
        r.setPreference("k", value: Self.nfc, at: t0)
        #expect(r.setPreference("k", value: Self.nfd, at: t0) == .replaced)
        #expect(r.preferences["k"].map { Array($0.value.utf8) } == Array(Self.nfd.utf8))
    }

    @Test func preferenceKeysInBothSpellingsAreTwoPreferences() {
        var r = record()
        #expect(r.setPreference(Self.nfc, value: "1", at: t0) == .inserted)
        #expect(r.setPreference(Self.nfd, value: "2", at: t0) == .inserted)
        #expect(r.preferences.count == 2)
        #expect(r.preferences[Self.nfc]?.value == "1")
        #expect(r.preferences[Self.nfd]?.value == "2")
        #expect(
            r.preferences.sortedByKey.map { Array($0.key.utf8) } == [
                Array(Self.nfd.utf8), Array(Self.nfc.utf8),
            ])
        let removed = r.removePreference(Self.nfd)
        let again = r.removePreference(Self.nfd)
        #expect(removed && !again)
        #expect(r.preferences[Self.nfc]?.value == "1")
    }

    @Test func questionIDsInBothSpellingsAreTwoQuestions() {
        var r = record()
        #expect(
            r.answer(QuestionResponse(questionID: Self.nfc, answer: .number(1), answeredAt: t0)) == .inserted)
        #expect(
            r.answer(QuestionResponse(questionID: Self.nfd, answer: .number(2), answeredAt: t0)) == .inserted)
        #expect(r.responses.count == 2)
        #expect(r.response(questionID: Self.nfc)?.answer == .number(1))
        #expect(r.response(questionID: Self.nfd)?.answer == .number(2))
        // In byte order: NFD ("e" 0x65) before NFC (0xC3).
        #expect(
            r.responses.map { Array($0.questionID.utf8) } == [Array(Self.nfd.utf8), Array(Self.nfc.utf8)])
    }

    @Test func footprintAndSavingIDsInBothSpellingsAreTwoItems() {
        var r = record()
        for id in [Self.nfc, Self.nfd] {
            #expect(
                r.upsert(
                    Footprint(
                        id: id, co2e: CO2e(milligrams: 1), category: "c", methodology: "m", calculatedAt: t0))
                    == .inserted)
            #expect(
                r.upsert(
                    Saving(
                        id: id, actionID: "a", co2e: CO2e(milligrams: 1), period: Period(start: t0, end: t0),
                        recordedAt: t0)) == .inserted)
        }
        #expect(r.footprints.count == 2 && r.savings.count == 2)
        #expect(r.footprint(id: Self.nfd) != nil && r.saving(id: Self.nfc) != nil)
    }

    @Test func metadataKeysInBothSpellingsAreTwoEntries() {
        var m: ExactDictionary<String> = [Self.nfc: "1"]
        m[Self.nfd] = "2"
        #expect(m.count == 2)
        #expect(m[Self.nfc] == "1" && m[Self.nfd] == "2")
        #expect(m.updateValue("3", forKey: Self.nfd) == "2")
    }

    @Test func hashesAgreeWithEquality() {
        let a = txn(Self.nfc)
        let b = txn(Self.nfd)
        #expect(Set([a, b]).count == 2)
        #expect(Set([a, txn(Self.nfc)]).count == 1)
        var m1: ExactDictionary<String> = [:]
        var m2: ExactDictionary<String> = [:]
        for i in 0..<20 { m1["k\(i)"] = "v" }
        for i in (0..<20).reversed() { m2["k\(i)"] = "v" }
        #expect(m1 == m2 && m1.hashValue == m2.hashValue)
        #expect(Set([Answer.text(Self.nfc), .text(Self.nfd)]).count == 2)
    }

    @Test func numbersCompareByTheirBits() {
        #expect(Answer.number(.nan) == Answer.number(.nan))
        #expect(Answer.number(0) != Answer.number(-0.0))
        #expect(Answer.number(1.5) == Answer.number(1.5))
    }

    @Test func jsonKeepsBothSpellingsOfValuesAndRefusesToMergeKeys() throws {
        var r = record()
        r.setPreference("k", value: Self.nfd, at: t0)
        let back = try JSONDecoder().decode(UserRecord.self, from: JSONEncoder().encode(r))
        #expect(back == r)
        // Foundation's JSON coders key objects by String, which would merge the two keys: refused.
        r.setPreference(Self.nfc, value: "1", at: t0)
        r.setPreference(Self.nfd, value: "2", at: t0)
        #expect(throws: EncodingError.self) { try JSONEncoder().encode(r) }
    }

    @Test func jsonKeepsBothKeysThroughATableOfPlaceholders() throws {
        let d: ExactDictionary<String> = [Self.nfc: "1", Self.nfd: "2", "k": "3"]
        let table = ExactJSONKeys(marker: "m")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.userInfo[ExactJSONKeys.userInfoKey] = table
        // Every key under a placeholder, numbered in UTF-8 byte order of the keys.
        #expect(
            String(decoding: try encoder.encode(d), as: UTF8.self)
                == #"{"m0000000000":"2","m0000000001":"1","m0000000002":"3"}"#)
        #expect(table.keys.isByteEqual(to: [Self.nfd, Self.nfc, "k"]))
        // Without such keys, the keys themselves, table or not.
        let plain: ExactDictionary<String> = [Self.nfc: "1", "k": "3"]
        #expect(
            String(decoding: try encoder.encode(plain), as: UTF8.self)
                == "{\"\(Self.nfc)\":\"1\",\"k\":\"3\"}")
        #expect(table.keys.count == 3)

        let decoder = JSONDecoder()
        decoder.userInfo[ExactJSONKeys.userInfoKey] = ExactJSONKeys(marker: "m", keys: [Self.nfd, Self.nfc])
        let back = try decoder.decode(
            ExactDictionary<String>.self,
            from: Data(#"{"m0000000000":"2","m0000000001":"1","k":"3","m7":"4"}"#.utf8))
        #expect(back == [Self.nfc: "1", Self.nfd: "2", "k": "3", "m7": "4"])
    }
}
