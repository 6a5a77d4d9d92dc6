import CarbonModel
import Testing

@Suite struct ISO4217Tests {
    @Test func validatedCodesAreTheActiveListWithMinorUnits() throws {
        #expect(try CurrencyCode(validating: "eur").code == "EUR")
        #expect(try CurrencyCode(validating: "JPY").minorUnitDigits == 0)
        #expect(try CurrencyCode(validating: "BHD").minorUnitDigits == 3)
        #expect(try CurrencyCode(validating: "UYW").minorUnitDigits == 4)
        #expect(try CurrencyCode(validating: "XCG").minorUnitDigits == 2)  // added in 2025
        #expect(try CurrencyCode(validating: "ZWG").code == "ZWG")
        // Three letters, but not currencies.
        for code in ["ABC", "QQQ", "EUX"] {
            let error = #expect(throws: ModelError.self) { try CurrencyCode(validating: code) }
            #expect(error?.description.contains("not an active ISO 4217 currency") == true)
        }
        // Withdrawn from the list.
        for code in ["HRK", "ANG", "ZWL", "DEM"] {
            #expect(throws: ModelError.self, "\(code)") { try CurrencyCode(validating: code) }
        }
        // On the list, but without a minor unit: no amount of money can be written in them.
        for code in ["XAU", "XDR", "XXX", "XTS"] {
            let error = #expect(throws: ModelError.self) { try CurrencyCode(validating: code) }
            #expect(error?.description.contains("has no minor unit") == true, "\(code)")
        }
        let shape = #expect(throws: ModelError.self) { try CurrencyCode(validating: "EURO") }
        #expect(shape?.description.contains("three letters") == true)
    }

    @Test func theTableIsTheWholePublishedList() {
        #expect(ISO4217.published == "2026-01-01")
        #expect(ISO4217.codes.count == 178)
        #expect(ISO4217.entry("EUR") == ISO4217.Entry(number: 978, minorUnitDigits: 2, name: "Euro"))
        #expect(ISO4217.entry("CLF")?.minorUnitDigits == 4)
        #expect(ISO4217.entry("XAU")?.minorUnitDigits == nil)
        #expect(ISO4217.entry("XAU") != nil)
        var digits: [Int: Int] = [:]
        for code in ISO4217.codes {
            #expect(code.utf8.count == 3 && code.utf8.allSatisfy { $0 >= 65 && $0 <= 90 })
            if let d = ISO4217.entry(code)?.minorUnitDigits { digits[d, default: 0] += 1 }
        }
        // The counts of the published list: 17 with 0 digits, 7 with 3, 2 with 4, 13 without.
        #expect(digits == [0: 17, 2: 139, 3: 7, 4: 2])
        #expect(Set(ISO4217.codes.map { ISO4217.entry($0)!.number }).count == 178)
    }

    @Test func storedCodesOffTheListStillReadWithTwoDigits() {
        // A file written with a code that has since been withdrawn keeps its amounts.
        #expect(CurrencyCode("HRK")?.minorUnitDigits == 2)
        #expect(CurrencyCode("XAU")?.minorUnitDigits == 2)
        #expect(Money(minorUnits: 1234, currency: CurrencyCode("HRK")!).decimalString == "12.34")
    }
}

@Suite struct DisplayTextTests {
    @Test func controlAndFormattingCharactersAreEscaped() {
        #expect(DisplayText.escaped("alice") == "alice")
        #expect(DisplayText.escaped("caf\u{E9} e\u{301} 日本") == "caf\u{E9} e\u{301} 日本")
        #expect(DisplayText.escaped("a\u{1B}[31mred") == #"a\u{1B}[31mred"#)
        #expect(DisplayText.escaped("a\nb\r\t\u{0}") == #"a\u{A}b\u{D}\u{9}\u{0}"#)
        #expect(DisplayText.escaped("\u{7F}\u{85}\u{9F}") == #"\u{7F}\u{85}\u{9F}"#)
        #expect(DisplayText.escaped("x\u{202E}gpj.exe") == #"x\u{202E}gpj.exe"#)
        #expect(
            DisplayText.escaped("\u{2028}\u{2029}\u{2066}\u{200F}") == #"\u{2028}\u{2029}\u{2066}\u{200F}"#)
        #expect(DisplayText.escaped(#"a\b"#) == #"a\\b"#)
        #expect(DisplayText.escaped(#"a\b"#, escapingBackslash: false) == #"a\b"#)
        #expect(DisplayText.escaped("a\u{1B}\\", escapingBackslash: false) == #"a\u{1B}\"#)
    }

    @Test func differentStringsNeverLookAlike() {
        // The text "\u{1B}" and the escape character itself are shown differently.
        let typed = #"\u{1B}"#
        #expect(DisplayText.escaped(typed) != DisplayText.escaped("\u{1B}"))
        let samples = ["\u{1B}", typed, "\\", "\\\\", "a\nb", #"a\u{A}b"#, ""]
        #expect(Set(samples.map { DisplayText.escaped($0) }).count == samples.count)
    }

    @Test func scalarCodes() {
        #expect(DisplayText.scalarCodes("e\u{301}") == "U+0065 U+0301")
        #expect(DisplayText.scalarCodes("\u{1F600}") == "U+1F600")
    }
}

@Suite struct WideTotalsTests {
    @Test func sumsBeyondInt64Format() {
        let sum = Int128(Int64.max) + Int128(Int64.max)
        #expect(DecimalText.format(wide: sum, fractionDigits: 2) == "184467440737095516.14")
        #expect(DecimalText.format(wide: -sum, fractionDigits: 0) == "-18446744073709551614")
        #expect(DecimalText.format(wide: 5, fractionDigits: 3) == "0.005")
        #expect(CO2e.kilograms(milligrams: sum) == "18446744073709.551614")
        #expect(CO2e.kilograms(milligrams: 1_500_000) == "1.5")
        #expect(CO2e.kilograms(milligrams: 0) == "0")
        #expect(DecimalText.format(Int64.min, fractionDigits: 2) == "-92233720368547758.08")
    }
}
