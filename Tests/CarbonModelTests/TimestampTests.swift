import CarbonModel
import CarbonStoreTestSupport
import Testing

@Suite struct TimestampTests {
    @Test(arguments: [
        (Int64(0), "1970-01-01T00:00:00.000Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (1_772_357_400_000, "2026-03-01T09:30:00.000Z"),
        (1_709_164_800_123, "2024-02-29T00:00:00.123Z"),
        (951_782_400_000, "2000-02-29T00:00:00.000Z"),
        (-62_135_596_800_000, "0001-01-01T00:00:00.000Z"),
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
        (-2_208_988_800_000, "1900-01-01T00:00:00.000Z"),
    ])
    func formatsAndParsesKnownInstants(ms: Int64, text: String) {
        let t = Timestamp(millisecondsSince1970: ms)
        #expect(t.iso8601 == text)
        #expect(Timestamp(iso8601: text) == t)
        #expect(t.description == text)
    }

    @Test func isoLimits() {
        #expect(Timestamp.earliestISO.iso8601 == "0001-01-01T00:00:00.000Z")
        #expect(Timestamp.latestISO.iso8601 == "9999-12-31T23:59:59.999Z")
        let before = Timestamp(millisecondsSince1970: Timestamp.earliestISO.millisecondsSince1970 - 1)
        #expect(before.iso8601 == "@-62135596800001")
        #expect(Timestamp(iso8601: before.iso8601) == before)
        for ms in [Int64.min, Int64.max, Timestamp.latestISO.millisecondsSince1970 + 1] {
            let t = Timestamp(millisecondsSince1970: ms)
            #expect(t.iso8601 == "@\(ms)")
            #expect(Timestamp(iso8601: t.iso8601) == t)
        }
    }

    @Test func roundTripsAcrossTheISORange() {
        var rng = SeededRandom(seed: 42)
        let lo = Timestamp.earliestISO.millisecondsSince1970
        let hi = Timestamp.latestISO.millisecondsSince1970
        for _ in 0..<20_000 {
            let t = Timestamp(millisecondsSince1970: Int64.random(in: lo...hi, using: &rng))
            let text = t.iso8601
            #expect(text.utf8.count == 24)
            #expect(Timestamp(iso8601: text) == t, "\(t.millisecondsSince1970)")
        }
        // Every day boundary of a leap cycle round-trips and is ordered.
        var previous = ""
        for day in Int64(-800)..<Int64(1_500) {
            let text = Timestamp(millisecondsSince1970: day * 86_400_000).iso8601
            #expect(Timestamp(iso8601: text)?.millisecondsSince1970 == day * 86_400_000)
            #expect(text > previous)
            previous = text
        }
    }

    @Test(arguments: [
        ("2026-03-01", Int64(1_772_323_200_000)),
        ("2026-03-01T09:30Z", 1_772_357_400_000),
        ("2026-03-01T09:30:00Z", 1_772_357_400_000),
        ("2026-03-01 09:30:00z", 1_772_357_400_000),
        ("2026-03-01t09:30:00.5Z", 1_772_357_400_500),
        ("2026-03-01T09:30:00,25Z", 1_772_357_400_250),
        ("2026-03-01T09:30:00.1239Z", 1_772_357_400_123),  // digits past milliseconds are dropped
        ("2026-03-01T10:30:00.000+01:00", 1_772_357_400_000),
        ("2026-03-01T04:00:00-05:30", 1_772_357_400_000),
        ("2026-03-01T09:30:00+0000", 1_772_357_400_000),
        ("@-5", -5),
        ("@9223372036854775807", .max),
    ])
    func parsesVariants(text: String, ms: Int64) {
        #expect(Timestamp(iso8601: text)?.millisecondsSince1970 == ms)
    }

    @Test(arguments: [
        "", "2026", "2026-3-01", "2026-13-01", "2026-00-10", "2026-01-32", "2025-02-29", "1900-02-29",
        "0000-01-01",
        "2026-01-01T24:00Z", "2026-01-01T10:60Z", "2026-01-01T10:00:60Z", "2026-01-01T10:00",
        "2026-01-01T10:00:00",
        "2026-01-01T10:00:00.Z", "2026-01-01T10:00:00Z ", " 2026-01-01", "2026-01-01T10:00:00+1",
        "2026-01-01T10:00:00+24:00",
        "2026-01-01X10:00Z", "abc", "@", "@abc", "@1.5", "@99999999999999999999", "２０２６-01-01",
    ])
    func rejectsMalformedText(text: String) {
        #expect(Timestamp(iso8601: text) == nil)
    }

    /// RFC 3339 date-times, and nothing else that `init?(iso8601:)` takes.
    @Test func rfc3339IsTheStrictForm() {
        let accepted: [(String, Int64)] = [
            ("2026-03-01T09:30:00Z", 1_772_357_400_000), ("2026-03-01t09:30:00z", 1_772_357_400_000),
            ("2026-03-01T09:30:00.250Z", 1_772_357_400_250),
            ("2026-03-01T10:30:00.250+01:00", 1_772_357_400_250),
            ("2026-03-01T08:30:00-01:00", 1_772_357_400_000),
            ("2026-03-01T09:30:00.2509Z", 1_772_357_400_250),
        ]
        for (text, ms) in accepted {
            #expect(Timestamp(rfc3339: text)?.millisecondsSince1970 == ms, "\(text)")
            #expect(Timestamp(rfc3339: text) == Timestamp(iso8601: text), "\(text)")
        }
        let refused = [
            "2026-03-01", "2026-03-01T09:30Z", "2026-03-01T09:30:00", "2026-03-01T09:30:00+0100",
            "2026-03-01T09:30:00,5Z", "2026-03-01 09:30:00Z", "2026-03-01T09:30:00.Z", "@1000",
            "2026-03-01T09:30:00Z ", "2026-03-01T09:30:00+01", "2026-02-30T09:30:00Z", "2026-03-01T24:00:00Z",
            "2026-03-01T09:30:00+01:0", "２０２６-03-01T09:30:00Z", "",
        ]
        for text in refused { #expect(Timestamp(rfc3339: text) == nil, "\(text)") }
    }

    @Test func jsonFormIsAnISOString() throws {
        let t = Timestamp(millisecondsSince1970: 1_772_357_400_250)
        let json = try JSONCoding.encode(t)
        #expect(json == "\"2026-03-01T09:30:00.250Z\"")
        #expect(try JSONCoding.decode(Timestamp.self, json) == t)
        #expect(throws: DecodingError.self) { try JSONCoding.decode(Timestamp.self, "\"yesterday\"") }
        #expect(throws: DecodingError.self) { try JSONCoding.decode(Timestamp.self, "1772357400250") }
    }

    @Test func ordering() {
        #expect(Timestamp(millisecondsSince1970: -1) < Timestamp(millisecondsSince1970: 0))
        #expect(!(Timestamp(millisecondsSince1970: 5) < Timestamp(millisecondsSince1970: 5)))
    }
}
