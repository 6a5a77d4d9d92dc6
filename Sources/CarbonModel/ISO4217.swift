/// The ISO 4217 list of active currencies and funds, with each one's minor unit (the table is in
/// ISO4217Table.swift, with the date of the list it was made from).
public enum ISO4217 {
    /// One currency or fund of the list.
    public struct Entry: Sendable, Hashable {
        /// The ISO 4217 numeric code, e.g. 978 for EUR.
        public var number: Int
        /// Digits after the decimal point of the minor unit: 0 for JPY, 2 for EUR, 3 for KWD, 4 for
        /// CLF. Nil where the list says "N.A." (precious metals, bond-market units, XDR, XXX, ...).
        public var minorUnitDigits: Int?
        /// The currency's name in the list, e.g. "Euro".
        public var name: String

        public init(number: Int, minorUnitDigits: Int?, name: String) {
            self.number = number
            self.minorUnitDigits = minorUnitDigits
            self.name = name
        }
    }

    /// The entry for an upper-case code, or nil when it is not on the list.
    public static func entry(_ code: String) -> Entry? { entries[code] }

    /// Every code on the list, in alphabetical order.
    public static var codes: [String] { entries.keys.sorted() }
}
