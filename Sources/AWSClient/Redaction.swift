import Foundation

/// Removes credential material from text that goes into an error or a log: answers of credential
/// endpoints (ECS, instance metadata, STS), error bodies of S3 and DynamoDB, configuration values.
///
/// Two rules, applied in order:
/// - **By name.** The value of any field whose name contains `secret`, `token`, `password`,
///   `passwd`, `credential`, `signature`, `private_key`, `access_key`, `api_key`, `session_key` or
///   `authorization` (any case, `_` or `-` optional) becomes `<redacted>`: JSON members
///   (`"SecretAccessKey": "…"`), XML elements (`<SessionToken>…`), `key=value` and `key: value`
///   pairs (INI files, forms, query strings, headers; `Bearer`/`Basic`/`AWS4-HMAC-SHA256` schemes
///   included), and the password of a URL (`https://user:…@host`). A value cut off by the end of the
///   text (a truncated document) is redacted to the end. After a colon, a plain word of fewer than
///   16 letters is kept (`InvalidIdentityToken: Incorrect token audience` is an error code and its
///   message), unless the name contains `secret` or `password`.
/// - **By shape** (`bySecretShape`, for text from outside): AWS access key ids (`AKIA…`, `ASIA…`),
///   and runs of 20 or more base64 / base64url characters that mix upper case, lower case and
///   digits, as secret keys, session tokens and JWTs do. Request ids, UUIDs, ARNs and names do not
///   have that shape.
///
/// Redact before shortening: a value cut in the middle is still recognised by its name only while
/// the name is in the text.
public enum SecretRedaction {
    /// What a redacted value is replaced with.
    public static let marker = "<redacted>"

    /// The text with credential values removed (both rules when `bySecretShape`). Linear in the
    /// length of the text: a hostile answer cannot make it slow.
    public static func redact(_ text: String, bySecretShape: Bool = true) -> String {
        var c = Array(text)
        c = redactByName(c)
        c = redactURLPasswords(c)
        if bySecretShape { c = redactByShape(c) }
        return String(c)
    }

    /// Up to `limit` characters of a body received from outside, on one line, redacted: for
    /// quoting an answer in an error message.
    public static func excerpt(_ body: [UInt8], limit: Int = 200) -> String {
        // Redact a window well beyond the limit, so that names before the cut are seen.
        let window = String(decoding: body.prefix(max(4096, limit * 4)), as: UTF8.self)
        return oneLine(redact(window), limit: limit)
    }

    /// Words whose presence in a field name makes its value secret.
    static let secretWords = [
        "secret", "token", "password", "passwd", "credential", "signature", "privatekey", "private_key",
        "private-key", "accesskey", "access_key", "access-key", "apikey", "api_key", "api-key", "sessionkey",
        "session_key", "session-key", "authorization",
    ]
    /// Names whose values are redacted even when they look like a plain word.
    static let alwaysSecretWords = ["secret", "password", "passwd"]
    static let schemes: Set<String> = ["Bearer", "Basic", "AWS4-HMAC-SHA256"]

    static func isNameCharacter(_ ch: Character) -> Bool {
        ch.isASCII && (ch.isLetter || ch.isNumber || ch == "_" || ch == "." || ch == "-")
    }

    static func isValueTerminator(_ ch: Character) -> Bool {
        ch.isWhitespace || "&,;\"'<>}]".contains(ch)
    }

    /// The values of secret-named fields: JSON members, XML elements, `name=value`, `name: value`.
    static func redactByName(_ c: [Character]) -> [Character] {
        var out: [Character] = []
        out.reserveCapacity(c.count)
        var i = 0
        while i < c.count {
            guard isNameCharacter(c[i]), i == 0 || !isNameCharacter(c[i - 1]) else {
                out.append(c[i])
                i += 1
                continue
            }
            var j = i
            while j < c.count, isNameCharacter(c[j]) { j += 1 }
            let word = String(c[i..<j]).lowercased()
            out += c[i..<j]
            let nameStart = i
            i = j
            guard secretWords.contains(where: { word.contains($0) }) else { continue }
            let always = alwaysSecretWords.contains { word.contains($0) }
            if let (start, end) = xmlValue(c, nameStart: nameStart, nameEnd: j)
                ?? fieldValue(c, nameEnd: j, always: always)
            {
                out += c[j..<start]
                out += Array(marker)
                i = end
            }
        }
        return out
    }

    /// For `<name attrs>value`: the value's range, up to the next tag or the end.
    static func xmlValue(_ c: [Character], nameStart: Int, nameEnd: Int) -> (Int, Int)? {
        var k = nameStart - 1
        if k >= 0, c[k] == ":" {  // a namespace prefix: <ns:Name>
            k -= 1
            while k >= 0, isNameCharacter(c[k]) { k -= 1 }
        }
        guard k >= 0, c[k] == "<" else { return nil }
        var p = nameEnd
        while p < c.count, c[p] != ">" {
            if c[p] == "<" { return nil }
            p += 1
        }
        guard p < c.count else { return nil }
        let start = p + 1
        var end = start
        while end < c.count, c[end] != "<" { end += 1 }
        guard c[start..<end].contains(where: { !$0.isWhitespace }) else { return nil }
        return (start, end)
    }

    /// For `name = value`, `"name": "value"`, `name: Bearer value`: the value's range (inside the
    /// quotes of a quoted value, which may be cut off by the end of the text).
    static func fieldValue(_ c: [Character], nameEnd: Int, always: Bool) -> (Int, Int)? {
        var p = nameEnd
        if p < c.count, c[p] == "\"" || c[p] == "'" { p += 1 }
        while p < c.count, c[p] == " " || c[p] == "\t" { p += 1 }
        guard p < c.count, c[p] == "=" || c[p] == ":" else { return nil }
        let colon = c[p] == ":"
        p += 1
        while p < c.count, c[p] == " " || c[p] == "\t" { p += 1 }
        guard p < c.count else { return nil }
        if c[p] == "\"" || c[p] == "'" {
            let quote = c[p]
            let start = p + 1
            var end = start
            while end < c.count, c[end] != quote {
                end += c[end] == "\\" ? 2 : 1
            }
            end = min(end, c.count)
            return end > start ? (start, end) : nil
        }
        if c[p] == "{" || c[p] == "[" { return nil }  // members are handled one by one
        let start = p
        var end = p
        while end < c.count, !isValueTerminator(c[end]) { end += 1 }
        // An authorization scheme: the credential is the word after it.
        if schemes.contains(String(c[start..<end])), end < c.count, c[end] == " " {
            end += 1
            while end < c.count, !isValueTerminator(c[end]) { end += 1 }
        }
        guard end > start else { return nil }
        // "InvalidIdentityToken: Incorrect token audience" is a code and its message.
        let value = c[start..<end]
        if colon, !always, value.count < 16, value.allSatisfy({ $0.isASCII && $0.isLetter }) { return nil }
        return (start, end)
    }

    /// The password in `scheme://user:password@host`.
    static func redactURLPasswords(_ c: [Character]) -> [Character] {
        var out = c
        var i = 0
        while i + 2 < out.count {
            guard out[i] == ":", out[i + 1] == "/", out[i + 2] == "/" else {
                i += 1
                continue
            }
            let authority = i + 3
            var at = authority
            var colon: Int?
            while at < out.count, !out[at].isWhitespace, out[at] != "@", at - authority < 512 {
                if out[at] == "/" { break }
                if out[at] == ":" && colon == nil { colon = at }
                at += 1
            }
            if at < out.count, out[at] == "@", let colon, at > colon + 1 {
                out.replaceSubrange((colon + 1)..<at, with: Array(marker))
                i = colon + 1 + marker.count
            } else {
                i = authority
            }
        }
        return out
    }

    static func isBase64Character(_ ch: Character) -> Bool {
        ch.isASCII && (ch.isLetter || ch.isNumber || ch == "+" || ch == "/" || ch == "_" || ch == "-")
    }

    static let accessKeyPrefixes = ["AKIA", "ASIA", "AIDA", "AROA", "AGPA", "ANPA", "ANVA", "APKA", "AIPA"]

    /// Access key ids, and long runs of base64 that mix upper case, lower case and digits.
    static func redactByShape(_ c: [Character]) -> [Character] {
        var out: [Character] = []
        out.reserveCapacity(c.count)
        var i = 0
        while i < c.count {
            guard isBase64Character(c[i]) else {
                out.append(c[i])
                i += 1
                continue
            }
            var j = i
            while j < c.count, isBase64Character(c[j]) { j += 1 }
            var end = j
            while end < c.count, end - j < 2, c[end] == "=" { end += 1 }
            let run = c[i..<j]
            let mixed =
                run.contains(where: \.isUppercase) && run.contains(where: \.isLowercase)
                && run.contains(where: \.isNumber)
            let word = String(run)
            let keyID =
                run.count >= 16 && accessKeyPrefixes.contains { word.hasPrefix($0) }
                && run.allSatisfy { ($0.isUppercase || $0.isNumber) && $0.isASCII }
            if (run.count >= 20 && mixed) || keyID {
                out += Array(marker)
            } else {
                out += c[i..<end]
            }
            i = end
        }
        return out
    }
}
