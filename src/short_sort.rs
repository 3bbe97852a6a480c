//! Sorting the short lists the gateway orders on its request path (a
//! route's targets, a minute window of metrics): a stable insertion sort.
//!
//! The standard library's stable sort (driftsort) is built for long slices
//! and adds about 3 KiB of wasm for each type and key it is used with; these
//! lists hold a handful to a few dozen items, where an insertion sort is as
//! fast and a few hundred bytes.

/// Sorts `v` by `key`, stably: items with equal keys keep their order.
pub fn sort_by_key<T, K: PartialOrd>(v: &mut [T], mut key: impl FnMut(&T) -> K) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 {
            let out_of_order = match (v.get(j - 1), v.get(j)) {
                (Some(a), Some(b)) => key(a) > key(b),
                _ => false,
            };
            if !out_of_order {
                break;
            }
            v.swap(j - 1, j);
            j -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sort_by_key;

    #[test]
    fn sorts_ascending_and_keeps_equal_keys_in_their_order() {
        let mut v = vec![(3, 'a'), (1, 'b'), (2, 'c'), (1, 'd'), (3, 'e'), (0, 'f')];
        sort_by_key(&mut v, |p| p.0);
        assert_eq!(v, vec![(0, 'f'), (1, 'b'), (1, 'd'), (2, 'c'), (3, 'a'), (3, 'e')]);
    }

    #[test]
    fn agrees_with_the_standard_stable_sort() {
        let mut seed = 7u64;
        for len in 0..40 {
            let mut v: Vec<(u64, usize)> = (0..len)
                .map(|i| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((seed >> 60) % 5, i)
                })
                .collect();
            let mut want = v.clone();
            want.sort_by_key(|p| p.0);
            sort_by_key(&mut v, |p| p.0);
            assert_eq!(v, want, "length {len}");
        }
    }

    #[test]
    fn orders_floats_by_value() {
        let mut v = vec![2.5, -1.0, 0.0, 10.0];
        sort_by_key(&mut v, |x| *x);
        assert_eq!(v, vec![-1.0, 0.0, 2.5, 10.0]);
    }
}
