/// Strings from users or from files, made safe to print on a terminal or in a log line.
///
/// Ids and keys may hold any Unicode scalar, including U+0000, terminal escape sequences (ESC,
/// U+001B) and bidirectional overrides that reorder what a reader sees. Human-readable output shows
/// them escaped, so the text printed is exactly the text typed, and nothing in it can move the
/// cursor, recolour the screen, start a new line or hide other characters.
public enum DisplayText {
    /// The string with each of these replaced by `\u{HEX}` (upper-case hexadecimal, Swift's
    /// spelling): control characters (U+0000–U+001F, U+007F–U+009F), the line and paragraph
    /// separators U+2028 and U+2029, and the bidirectional formatting characters (U+061C, U+200E,
    /// U+200F, U+202A–U+202E, U+2066–U+2069). With `escapingBackslash` (the default) a backslash
    /// is shown as `\\`, so the escaped forms of two different strings always differ. Everything
    /// else is left as it is.
    public static func escaped(_ text: String, escapingBackslash: Bool = true) -> String {
        let escapes = { (s: Unicode.Scalar) in needsEscape(s) || (escapingBackslash && s == "\\") }
        guard text.unicodeScalars.contains(where: escapes) else { return text }
        var out = ""
        out.reserveCapacity(text.utf8.count + 8)
        for s in text.unicodeScalars {
            if escapingBackslash && s == "\\" {
                out += "\\\\"
            } else if needsEscape(s) {
                out += "\\u{" + String(s.value, radix: 16, uppercase: true) + "}"
            } else {
                out.unicodeScalars.append(s)
            }
        }
        return out
    }

    /// Whether `escaped` writes this scalar as `\u{HEX}`.
    static func needsEscape(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x00...0x1F, 0x7F...0x9F: return true
        case 0x2028, 0x2029: return true
        case 0x061C, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069: return true
        default: return false
        }
    }

    /// The scalars of a string as `U+XXXX` codes separated by spaces, e.g. `U+0065 U+0301`.
    public static func scalarCodes(_ text: String) -> String {
        text.unicodeScalars.map { s in
            let hex = String(s.value, radix: 16, uppercase: true)
            return "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
        }.joined(separator: " ")
    }
}
