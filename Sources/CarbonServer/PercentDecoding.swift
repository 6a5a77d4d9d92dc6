/// Percent-decoding of a path segment (RFC 3986): `%XX` becomes the byte XX, every other byte is
/// kept; the result must be UTF-8. `+` is kept as it is (it means a space only in forms).
enum PercentDecoding {
    static func decode(_ text: some StringProtocol) -> String? {
        var out: [UInt8] = []
        var bytes = Array(text.utf8)[...]
        while let b = bytes.popFirst() {
            guard b == UInt8(ascii: "%") else {
                out.append(b)
                continue
            }
            guard bytes.count >= 2,
                let value = [UInt8](hexDigits: String(decoding: bytes.prefix(2), as: UTF8.self))
            else {
                return nil
            }
            out.append(value[0])
            bytes = bytes.dropFirst(2)
        }
        return String(validating: out, as: UTF8.self)
    }
}
