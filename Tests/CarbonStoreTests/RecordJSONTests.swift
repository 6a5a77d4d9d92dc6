import CarbonFormat
import CarbonModel
import CarbonStore
import CarbonStoreTestSupport
import Foundation
import Testing

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
        UserRecord(userID: "nan", revision: 1, createdAt: t0, responses: responses)
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
    static func sameBits(_ a: [QuestionResponse], _ b: [QuestionResponse]) -> Bool {
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
        try await store.update("nan") { record in record.responses = Self.responses }
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
