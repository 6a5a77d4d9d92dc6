import HTTPTypes

/// One route of the API: its method, its path as the OpenAPI document writes it
/// (`/v1/users/{userId}`), and the role a key needs (nil: no key needed).
public struct APIRoute: Sendable {
    public var method: HTTPRequest.Method
    public var path: String
    public var role: Role?

    /// Whether a request path (percent-encoded, as sent) has this route's shape: the same number of
    /// segments, equal where the route has text, non-empty where it has a parameter.
    func matches(path requestPath: String) -> Bool {
        let want = path.split(separator: "/", omittingEmptySubsequences: false)
        let have = requestPath.split(separator: "/", omittingEmptySubsequences: false)
        guard want.count == have.count else { return false }
        for (w, h) in zip(want, have) {
            if w.hasPrefix("{") { if h.isEmpty { return false } } else if w != h { return false }
        }
        return true
    }
}
