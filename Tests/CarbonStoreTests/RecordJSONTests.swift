import CarbonFormat
import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

/// The JSON views (`RecordJSON`, `file inspect`, `user show --json`) of every number an answer can
/// hold, non-finite ones included (docs/FORMAT.md, "JSON form").
@Suite struct RecordJSONViewTests {
    /// Every kind of double the format can hold, by bit pattern, with the question id it is stored under.
    static let numbers: [(question: String, bits: UInt64)] = [
        ("a-nan", Double.nan.bitPattern),
        ("b-nan-payload", 0x7FF8_0000_DEAD_BEEF),
        ("c-nan-signalling", 0x7FF0_0000_0000_0001),
        ("d-nan-negative", 0xFFF8_0000_0000_0000),
        ("e-nan-all-ones", UInt64.max),
        ("f-infinity", Double.infinity.bitPattern),
        ("g-minus-infinity", (-Double.infinity).bitPattern),
        ("h-minus-zero", (-0.0).bitPattern),
        ("i-zero", 0),
        ("j-finite", 1.5.bitPattern),
        ("k-largest", Double.greatestFiniteMagnitude.bitPattern),
        ("l-subnormal", Double.leastNonzeroMagnitude.bitPattern),
    ]

    /// Text answers that look like the names of non-finite numbers.
    static let texts: [(question: String, text: String)] = [
        ("m-text-nan", "NaN"), ("n-text-infinity", "Infinity"), ("o-text-minus-infinity", "-Infinity"),
    ]

    static let t0 = Timestamp(millisecondsSince1970: 1_767_225_600_000)

    static var responses: [QuestionResponse] {
        numbers.map {
            QuestionResponse(
                questionID: $0.question, answer: .number(Double(bitPattern: $0.bits)), answeredAt: t0)
        } + texts.map { QuestionResponse(questionID: $0.question, answer: .text($0.text), answeredAt: t0) }
    }

    static var record: UserRecord {
        UserRecord(userID: "nan", revision: 1, createdAt: t0, responses: ItemList(responses))
    }

    /// The `answer` of each response in a JSON view, by question id.
    static func answers(in json: String) throws -> [String: Any] {
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let responses = try #require(object["responses"] as? [[String: Any]])
        var result: [String: Any] = [:]
        for r in responses {
            let q = try #require(r["questionId"] as? String)
            result[q] = r["answer"]
        }
        return result
    }

    static func hex(_ bits: UInt64) -> String {
        let s = String(bits, radix: 16)
        return "0x" + String(repeating: "0", count: 16 - s.count) + s
    }

    /// Checks a JSON view against the documented form: finite numbers as JSON numbers (with the
    /// sign of −0), non-finite ones as `{"number": ...}` objects (NaN with its bits), text as strings.
    static func checkView(_ json: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let answers = try Self.answers(in: json)
        for (question, bits) in numbers {
            let d = Double(bitPattern: bits)
            let answer = answers[question]
            if d.isFinite {
                let n = try #require(answer as? NSNumber, "\(question)", sourceLocation: sourceLocation)
                #expect(!(answer is String), "\(question)", sourceLocation: sourceLocation)
                #expect(n.doubleValue == d, "\(question)", sourceLocation: sourceLocation)
            } else {
                let object = try #require(
                    answer as? [String: String], "\(question): \(String(describing: answer))",
                    sourceLocation: sourceLocation)
                if d.isNaN {
                    #expect(
                        object == ["number": "NaN", "bits": hex(bits)], "\(question)",
                        sourceLocation: sourceLocation)
                } else {
                    #expect(
                        object == ["number": d > 0 ? "Infinity" : "-Infinity"], "\(question)",
                        sourceLocation: sourceLocation)
                }
            }
        }
        #expect(json.contains(#""answer" : -0"#), "the sign of -0.0 shows", sourceLocation: sourceLocation)
        for (question, text) in texts {
            #expect(answers[question] as? String == text, "\(question)", sourceLocation: sourceLocation)
        }
    }

    /// Whether two lists of responses hold the same answers, numbers compared by their bits.
    static func sameBits(_ a: some Collection<QuestionResponse>, _ b: some Collection<QuestionResponse>)
        -> Bool
    {
        guard a.count == b.count else { return false }
        return zip(a, b).allSatisfy { x, y in
            guard x.questionID == y.questionID, x.answeredAt == y.answeredAt else { return false }
            switch (x.answer, y.answer) {
            case (.number(let p), .number(let q)): return p.bitPattern == q.bitPattern
            default: return x.answer == y.answer
            }
        }
    }

    @Test func recordJSONShowsEveryNumberAndDecodesItBackBitForBit() throws {
        let json = try RecordJSON.encode(Self.record)
        try Self.checkView(json)
        let back = try RecordJSON.decode(UserRecord.self, from: json)
        #expect(Self.sameBits(back.responses, Self.record.responses))
        let compact = try RecordJSON.encode(Self.record, pretty: false)
        #expect(compact.contains(#""answer":{"bits":"0x7ff80000deadbeef","number":"NaN"}"#))
        #expect(compact.contains(#""answer":{"number":"-Infinity"}"#))
        #expect(compact.contains(#""answer":"NaN""#))
        #expect(
            Self.sameBits(
                try RecordJSON.decode(UserRecord.self, from: compact).responses, Self.record.responses))
    }

    @Test func malformedNonFiniteNumbersAreRefused() throws {
        let bad = [
            #"{"number":"nan"}"#, #"{"number":"Inf"}"#, #"{"number":1}"#,
            #"{"number":"NaN","bits":"0x3ff0000000000000"}"#,
            #"{"number":"NaN","bits":"7ff8"}"#, #"{"number":"Infinity","bits":"0x7ff8000000000000"}"#,
            #"{"number":"NaN","other":1}"#, #"{"bits":"0x7ff8000000000000"}"#, #"{}"#,
        ]
        for text in bad {
            #expect(throws: (any Error).self, "\(text)") {
                try RecordJSON.decode(Answer.self, from: text)
            }
        }
        let nan = try RecordJSON.decode(Answer.self, from: #"{"number":"NaN"}"#)
        guard case .number(let d) = nan else {
            Issue.record("not a number: \(nan)")
            return
        }
        #expect(d.bitPattern == Double.nan.bitPattern)
        #expect(try RecordJSON.decode(Answer.self, from: #"{"number":"-Infinity"}"#) == .number(-.infinity))
        #expect(try RecordJSON.decode(Answer.self, from: #""NaN""#) == .text("NaN"))
    }

    @Test func commandLineViewsShowEveryNumber() async throws {
        let dir = try TemporaryDirectory("json-views")
        defer { dir.remove() }
        let store = try await StoreFactory().makeStore("path:" + dir.path)
        try await store.update("nan") { record in record.responses = ItemList(Self.responses) }
        let cli = try CommandRunner(environment: ["CARBONSTORE_STORAGE": "path:" + dir.path])

        let show = try cli.run(["user", "show", "nan", "--json"])
        #expect(show.status == 0, "\(show.stderr)")
        try Self.checkView(show.stdout)
        #expect(
            Self.sameBits(try RecordJSON.decode(UserRecord.self, from: show.stdout).responses, Self.responses)
        )

        let path = dir.path + "/" + (try UserKeys().key(for: "nan"))
        let inspect = try cli.run(["file", "inspect", path])
        #expect(inspect.status == 0, "\(inspect.stderr)")
        try Self.checkView(inspect.stdout)
        #expect(inspect.stdout == show.stdout)

        // The same file written by the codec alone, as a reader would find it.
        let file = dir.path + "/codec.cstore"
        try Data(RecordCodec().encode(Self.record)).write(to: URL(fileURLWithPath: file))
        let direct = try cli.run(["file", "inspect", file])
        #expect(direct.status == 0, "\(direct.stderr)")
        try Self.checkView(direct.stdout)
    }
}

/// Keys of preferences and transaction metadata are byte-exact in the JSON views, both ways, even
/// when two are canonically equivalent (é as U+00E9 and as e + U+0301), which Foundation's coders
/// alone would merge (docs/FORMAT.md, "JSON form").
@Suite struct RecordJSONExactKeyTests {
    static let nfc = "caf\u{E9}"
    static let nfd = "cafe\u{301}"
    /// A key with a quote, a backslash, control characters, a slash, a line separator and a
    /// character outside the BMP, in both spellings.
    static let hostileNFC = "\"q\\\u{0}\u{1F}\u{7F}/\u{2028}\n\u{1F600}\u{E9}"
    static let hostileNFD = "\"q\\\u{0}\u{1F}\u{7F}/\u{2028}\n\u{1F600}e\u{301}"
    static let t0 = Timestamp(millisecondsSince1970: 1_767_225_600_000)

    static var record: UserRecord {
        var r = UserRecord(userID: "u", revision: 3, createdAt: t0)
        r.setPreference(nfc, value: "1", at: t0)
        r.setPreference(nfd, value: "2", at: t0)
        r.setPreference(hostileNFC, value: "3", at: t0)
        r.setPreference(hostileNFD, value: "4", at: t0)
        r.setPreference("plain", value: nfd, at: t0)
        let metadata: ExactDictionary<String> = [nfc: "m1", nfd: "m2", "other": "m3"]
        r.transactions = [
            Transaction(
                id: "t1", time: t0, amount: Money(minorUnits: 100, currency: CurrencyCode("EUR")!),
                metadata: metadata)
        ]
        return r
    }

    /// The JSON string of a key, as JSONEncoder writes it.
    static func quoted(_ key: String) throws -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.withoutEscapingSlashes]
        return Array(try e.encode(key))
    }

    /// How often the bytes occur in the text.
    static func count(_ needle: [UInt8], in text: String) -> Int {
        let bytes = Array(text.utf8)
        var n = 0
        var from = 0
        while let p = RecordJSON.firstIndex(of: needle, in: bytes, from: from) {
            n += 1
            from = p + 1
        }
        return n
    }

    @Test func everyKeyShowsByteForByteAndRoundTrips() throws {
        let r = Self.record
        for pretty in [true, false] {
            let json = try RecordJSON.encode(r, pretty: pretty)
            let colon = Array((pretty ? " : " : ":").utf8)
            for key in [Self.nfc, Self.nfd, Self.hostileNFC, Self.hostileNFD, "plain", "other"] {
                let n = Self.count(try Self.quoted(key) + colon, in: json)
                #expect(n == ([Self.nfc, Self.nfd].contains { $0.isByteEqual(to: key) } ? 2 : 1), "\(json)")
            }
            #expect(!json.contains("xk"), "no placeholder left")
            let back = try RecordJSON.decode(UserRecord.self, from: json)
            #expect(back == r)
            #expect(back.preferences.count == 5 && back.transactions.first?.metadata.count == 3)
            #expect(
                back.preferences[Self.nfd]?.value == "2" && back.preferences[Self.hostileNFC]?.value == "3")
            #expect(back.preferences[Self.hostileNFD]?.value == "4")
            #expect(back.transactions.first?.metadata[Self.nfc] == "m1")
            #expect(back.transactions.first?.metadata[Self.nfd] == "m2")
            // Valid JSON to any reader (which may merge the keys, as Foundation's does).
            #expect(try JSONSerialization.jsonObject(with: Data(json.utf8)) is [String: Any])
        }
        // The keys of a dictionary in UTF-8 byte order, as every other object's: NFD "e" (0x65)
        // before NFC "é" (0xC3 0xA9).
        let compact = Array(try RecordJSON.encode(r, pretty: false).utf8)
        let nfdAt = try #require(RecordJSON.firstIndex(of: try Self.quoted(Self.nfd), in: compact, from: 0))
        let nfcAt = try #require(RecordJSON.firstIndex(of: try Self.quoted(Self.nfc), in: compact, from: 0))
        #expect(nfdAt < nfcAt)
    }

    @Test func recordsWithoutSuchKeysShowExactlyAsFoundationWritesThem() throws {
        var checked = 0
        for seed in UInt64(0)..<60 {
            let r = RecordGenerator.record(seed: seed, isoSafe: true)
            let keySets = [r.preferences.keys] + r.transactions.map(\.metadata.keys)
            guard !keySets.contains(where: { Set($0).count != $0.count }) else { continue }
            for pretty in [true, false] {
                let e = JSONEncoder()
                e.outputFormatting =
                    pretty
                    ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                    : [.sortedKeys, .withoutEscapingSlashes]
                #expect(
                    try RecordJSON.encode(r, pretty: pretty)
                        == String(decoding: try e.encode(r), as: UTF8.self))
            }
            checked += 1
        }
        #expect(checked > 30)
    }

    @Test func generatedRecordsWithSuchKeysRoundTrip() throws {
        var clashing = 0
        for seed in UInt64(0)..<150 {
            let r = RecordGenerator.record(seed: seed, isoSafe: true)
            let keySets = [r.preferences.keys] + r.transactions.map(\.metadata.keys)
            if keySets.contains(where: { Set($0).count != $0.count }) { clashing += 1 }
            for pretty in [true, false] {
                let json = try RecordJSON.encode(r, pretty: pretty)
                #expect(try RecordJSON.decode(UserRecord.self, from: json) == r, "seed \(seed)")
            }
        }
        #expect(clashing > 0)
    }

    @Test func dataHoldingThePlaceholderMarkerIsWrittenWithAnother() throws {
        let taken = "xk" + String(repeating: "a", count: 32)
        let free = "xk" + String(repeating: "b", count: 32)
        var r = Self.record
        r.setPreference("a", value: taken + "0000000000", at: Self.t0)
        r.setPreference(taken + "0000000001", value: taken, at: Self.t0)
        var markers = [taken, free]
        let json = try RecordJSON.encode(r, pretty: false) { markers.removeFirst() }
        #expect(markers.isEmpty, "the first marker was refused")
        #expect(!json.contains(free))
        #expect(try RecordJSON.decode(UserRecord.self, from: json) == r)
        // Reading: a marker the data holds, even only as an escaped spelling of a key, is not used.
        var q = Self.record
        q.setPreference(taken + "0000000001", value: "v", at: Self.t0)
        let escaped = try RecordJSON.encode(q, pretty: false).replacingOccurrences(
            of: taken + "0000000001", with: #"\u0078k"# + String(taken.dropFirst(2)) + "0000000001")
        #expect(!escaped.contains(taken))
        markers = [taken, free]
        #expect(try RecordJSON.decode(UserRecord.self, from: escaped) { markers.removeFirst() } == q)
        #expect(markers.isEmpty, "the first marker was refused")
    }

    /// The JSON of a record whose preferences object is `preferences`, with each `V` standing for a
    /// valid preference: hand-written keys, spelled as a client may send them.
    static func text(preferences: String) throws -> String {
        var r = UserRecord(userID: "u", createdAt: t0)
        r.setPreference("PLACE", value: "v", at: t0)
        let json = try RecordJSON.encode(r, pretty: false)
        let start = try #require(json.range(of: #"{"PLACE":"#))
        let end = try #require(json[start.upperBound...].firstIndex(of: "}"))
        let value = String(json[start.upperBound...end])
        return json.replacingCharacters(
            in: start.lowerBound...json.index(after: end),
            with: preferences.replacingOccurrences(of: "V", with: value))
    }

    @Test func escapedSpellingsAreReadApart() throws {
        let json = try Self.text(
            preferences: #"{"caf\u00e9":V,"cafe\u0301":V,"caf\u00E9x":V,"\ud83d\ude00":V,"\"\\":V}"#)
        let r = try RecordJSON.decode(UserRecord.self, from: json)
        #expect(r.preferences.count == 5, "\(json)")
        #expect(r.preferences[Self.nfc] != nil && r.preferences[Self.nfd] != nil)
        #expect(r.preferences["\u{1F600}"] != nil && r.preferences["caf\u{E9}x"] != nil)
        #expect(r.preferences["\"\\"] != nil)
        // Raw bytes too; an error inside one of them names the key, not a placeholder.
        let raw = try Self.text(preferences: "{\"\(Self.nfc)\":V,\"\(Self.nfd)\":{\"value\":1}}")
        let error = #expect(throws: InvalidRequestError.self) {
            try RecordJSON.decode(UserRecord.self, from: raw)
        }
        #expect(
            error?.message.contains(".preferences.\(Self.nfd).value") == true, "\(String(describing: error))")
        #expect(error?.message.contains("xk") == false)
    }

    @Test func suchKeysInAnObjectOfFixedNamesAreRefused() throws {
        // A preference object with two extra keys that would merge: refused, not one of them dropped.
        let json = try Self.text(
            preferences:
                "{\"k\":{\"value\":\"v\",\"updatedAt\":\"2026-01-01T00:00:00Z\",\"\(Self.nfc)\":1,\"\(Self.nfd)\":2}}"
        )
        let error = #expect(throws: InvalidRequestError.self) {
            try RecordJSON.decode(UserRecord.self, from: json)
        }
        #expect(error?.message.contains("canonically equivalent") == true, "\(String(describing: error))")
        // The same bytes twice are not two spellings: read as Foundation reads them.
        let twice = try Self.text(preferences: "{\"\(Self.nfc)\":V,\"\(Self.nfc)\":V}")
        #expect(try RecordJSON.decode(UserRecord.self, from: twice).preferences.count == 1)
    }
}
