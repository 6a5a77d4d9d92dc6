import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@Suite struct MoneyTests {
    let eur = CurrencyCode("EUR")!
    let jpy = CurrencyCode("JPY")!
    let kwd = CurrencyCode("KWD")!

    @Test func currencyCodes() {
        #expect(CurrencyCode("eur")?.code == "EUR")
        #expect(CurrencyCode("Usd")?.code == "USD")
        for bad in ["", "EU", "EURO", "E1R", "E R", "ÉUR", "€", "eu\u{0}"] {
            #expect(CurrencyCode(bad) == nil, "\(bad)")
        }
        #expect(jpy.minorUnitDigits == 0)
        #expect(kwd.minorUnitDigits == 3)
        #expect(CurrencyCode("CLF")!.minorUnitDigits == 4)
        #expect(eur.minorUnitDigits == 2)
        #expect(CurrencyCode("EUR")! < CurrencyCode("USD")!)
    }

    @Test func currencyCodesAcceptOnlyASCIILetters() {
        // "ß".uppercased() is "SS" and "ﬀ" (U+FB00) is "FF": only ASCII letters may become a code.
        #expect(CurrencyCode("ßa") == nil)
        #expect(CurrencyCode("ﬀa") == nil)
        #expect(CurrencyCode("eur")?.code == "EUR")
        #expect(CurrencyCode("EU1") == nil)
    }

    @Test(arguments: [
        ("12.34", Int64(1234)), ("-5", -500), ("0.5", 50), ("+1.00", 100), ("0", 0), ("-0", 0),
        ("007.1", 710),
        (".5", 50), ("92233720368547758.07", .max), ("-92233720368547758.07", -.max),
    ])
    func parsesEuros(text: String, units: Int64) throws {
        #expect(try Money(decimal: text, currency: eur).minorUnits == units)
    }

    @Test(arguments: [
        "", "-", "+", ".", "5.", "1.234", "1e5", "1,00", " 1", "1 ", "--1", "1.2.3", "abc", "١٢",
        "92233720368547758.08", "100000000000000000000",
    ])
    func rejectsMalformedEuros(text: String) {
        #expect(throws: ModelError.self) { try Money(decimal: text, currency: eur) }
    }

    @Test func errorMessageNamesTheProblem() {
        do {
            _ = try Money(decimal: "1.234", currency: eur)
            Issue.record("accepted")
        } catch {
            #expect(error.field == "amount")
            #expect(
                error.description
                    == "invalid amount '1.234': expected a decimal number with at most 2 digits after the point for EUR, such as 12.34"
            )
        }
        // Well written but too large: the range, not the shape, is what is wrong.
        #expect(throws: ModelError.self) { try Money(decimal: "92233720368547758.08", currency: eur) }
        #expect((try? Money(decimal: "-92233720368547758.08", currency: eur))?.minorUnits == .min)
        for (text, field) in [("99999999999999999999999", "amount"), ("-92233720368547758.09", "amount")] {
            do {
                _ = try Money(decimal: text, currency: eur)
                Issue.record("\(text) accepted")
            } catch {
                #expect(error.field == field)
                #expect(
                    error.reason
                        == "out of range: an amount in EUR is from -92233720368547758.08 to 92233720368547758.07"
                )
            }
        }
        do {
            _ = try CO2e(kilograms: "92233720368547758")
            Issue.record("accepted")
        } catch {
            #expect(
                error.reason
                    == "out of range: a mass is from -9223372036854.775808 to 9223372036854.775807 kilograms")
        }
        for malformed in ["1.2.3", "1e5", ".5", "5.", "--1", "", "+"] {
            #expect(!DecimalText.isWellFormed(malformed, fractionDigits: 2), "\(malformed)")
        }
        let long = ModelError(field: "f", value: String(repeating: "x", count: 200), reason: "r")
        #expect(long.description == "invalid f '\(String(repeating: "x", count: 77))...': r")
    }

    @Test func currencyDigits() throws {
        #expect(try Money(decimal: "100", currency: jpy).minorUnits == 100)
        #expect(throws: ModelError.self) { try Money(decimal: "1.5", currency: jpy) }
        #expect(try Money(decimal: "1.234", currency: kwd).minorUnits == 1234)
        #expect(Money(minorUnits: 5, currency: jpy).decimalString == "5")
        #expect(Money(minorUnits: 5, currency: kwd).decimalString == "0.005")
        #expect(Money(minorUnits: -1234, currency: eur).description == "-12.34 EUR")
    }

    @Test(arguments: [
        (Int64(0), 2, "0.00"), (1, 2, "0.01"), (-1, 2, "-0.01"), (100, 2, "1.00"), (123_456, 2, "1234.56"),
        (5, 0, "5"),
        (-5, 0, "-5"), (1, 6, "0.000001"), (.max, 2, "92233720368547758.07"),
        (.min, 2, "-92233720368547758.08"),
        (.min, 0, "-9223372036854775808"),
    ])
    func decimalTextFormats(value: Int64, digits: Int, text: String) {
        #expect(DecimalText.format(value, fractionDigits: digits) == text)
    }

    @Test func decimalTextRoundTrips() {
        var values: [Int64] = [0, 1, -1, 9, 10, 99, 100, -100, .max, .min + 1, 1_000_000, -999_999]
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 { values.append(Int64.random(in: .min + 1 ... .max, using: &rng)) }
        for v in values {
            for digits in [0, 2, 3, 4, 6] {
                #expect(
                    DecimalText.parse(DecimalText.format(v, fractionDigits: digits), fractionDigits: digits)
                        == v)
            }
        }
    }

    @Test func int64MinRoundTrip() {
        #expect(DecimalText.parse(DecimalText.format(.min, fractionDigits: 2), fractionDigits: 2) == .min)
        #expect(DecimalText.parse("92233720368547758.08", fractionDigits: 2) == nil)
        #expect(DecimalText.parse("-92233720368547758.09", fractionDigits: 2) == nil)
    }

    @Test func jsonForm() throws {
        let m = Money(minorUnits: 1230, currency: eur)
        #expect(try JSONCoding.encode(m) == #"{"amount":"12.30","currency":"EUR"}"#)
        #expect(try JSONCoding.decode(Money.self, #"{"amount":"12.3","currency":"eur"}"#) == m)
        #expect(throws: DecodingError.self) {
            try JSONCoding.decode(Money.self, #"{"amount":"12.345","currency":"EUR"}"#)
        }
        #expect(throws: DecodingError.self) {
            try JSONCoding.decode(Money.self, #"{"amount":12.3,"currency":"EUR"}"#)
        }
        #expect(throws: DecodingError.self) {
            try JSONCoding.decode(Money.self, #"{"amount":"1","currency":"EURO"}"#)
        }
    }
}

@Suite struct CO2eTests {
    @Test(arguments: [
        ("12.345", Int64(12_345_000)), ("0", 0), ("1", 1_000_000), ("-0.000001", -1), ("0.5", 500_000),
        ("+2.000000", 2_000_000),
    ])
    func parsesKilograms(text: String, mg: Int64) throws {
        #expect(try CO2e(kilograms: text).milligrams == mg)
    }

    @Test(arguments: ["", "1.0000001", "kg", "1e3", "9223372036854.775808"])
    func rejectsMalformedKilograms(text: String) {
        #expect(throws: ModelError.self) { try CO2e(kilograms: text) }
    }

    @Test(arguments: [
        (Int64(12_345_000), "12.345"), (0, "0"), (1_000_000, "1"), (-1, "-0.000001"), (1_500_000, "1.5"),
        (10_000_000, "10"),
    ])
    func formatsKilograms(mg: Int64, text: String) {
        #expect(CO2e(milligrams: mg).kilogramsString == text)
        #expect(CO2e(milligrams: mg).description == "\(text) kg CO2e")
    }

    @Test func jsonForm() throws {
        #expect(try JSONCoding.encode(CO2e(milligrams: 12_345_000)) == "12.345")
        #expect(try JSONCoding.decode(CO2e.self, "12.345") == CO2e(milligrams: 12_345_000))
        #expect(try JSONCoding.decode(CO2e.self, "\"12.345\"") == CO2e(milligrams: 12_345_000))
        // Rounds half away from zero.
        #expect(try JSONCoding.decode(CO2e.self, "-0.0000005") == CO2e(milligrams: -1))
        #expect(throws: DecodingError.self) { try JSONCoding.decode(CO2e.self, "1e20") }
        #expect(throws: DecodingError.self) { try JSONCoding.decode(CO2e.self, "\"twelve\"") }
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let c = CO2e(
                milligrams: Int64.random(in: -1_000_000_000_000_000...1_000_000_000_000_000, using: &rng))
            #expect(try JSONCoding.decode(CO2e.self, JSONCoding.encode(c)) == c)
        }
        #expect(CO2e(milligrams: 1) < CO2e(milligrams: 2))
    }
}

/// What FORMAT.md's JSON form promises of `kgCO2e`: read back to the same milligrams below 10^15 mg
/// (15 significant digits, which an f64 keeps); the nearest f64 beyond.
@Suite struct CO2eJSONPrecisionTests {
    static func jsonText(_ mg: Int64) throws -> String {
        String(decoding: try JSONEncoder().encode([CO2e(milligrams: mg)]), as: UTF8.self).dropFirst()
            .dropLast()
            .description
    }

    @Test func belowTenToTheFifteenMilligramsTheJSONIsExact() throws {
        // A fixed seed: the same values at every run.
        var generator = SeededRandom(seed: 20_261_127)
        var values: [Int64] = [
            1, -1, 999_999_999_999_999, -999_999_999_999_999, 123_456_789_012_345, 3_200_000,
        ]
        for _ in 0..<5000 {
            values.append(Int64.random(in: -999_999_999_999_999...999_999_999_999_999, using: &generator))
        }
        for mg in values {
            let text = try Self.jsonText(mg)
            // The text read exactly as a decimal (exponents included), in milligrams.
            let exact =
                try #require(Decimal(string: text, locale: Locale(identifier: "en_US_POSIX"))) * 1_000_000
            #expect(exact == Decimal(mg), "\(mg) mg was written \(text)")
        }
    }

    @Test func beyondItTheJSONIsTheNearestDouble() throws {
        #expect(try Self.jsonText(8_635_820_473_991_711) == "8635820473.99171")
    }
}
