import Foundation

/// A value behind a pthread mutex (NSLock). Used instead of `Synchronization.Mutex`, whose futex
/// implementation on Linux the thread sanitizer cannot see, so that `swift test --sanitize=thread`
/// reports only real races.
package final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    package init(_ value: Value) { self.value = value }

    package func withLock<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
