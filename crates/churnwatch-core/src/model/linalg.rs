//! The little dense linear algebra the fitter needs on 4×4 matrices:
//! a finite-difference Hessian, Cholesky, and triangular inverses.

// Index loops mirror the textbook formulas (Lᵢⱼ, Hᵢⱼ); iterator rewrites
// would obscure which element is which.
#![allow(clippy::needless_range_loop)]

/// Number of model parameters.
pub(crate) const DIM: usize = 4;

pub(crate) type Vec4 = [f64; DIM];
pub(crate) type Mat4 = [[f64; DIM]; DIM];

/// Central-difference Hessian of `f` at `u` with step `h` (33 evaluations).
/// Returns `None` if any evaluation is not finite.
pub(crate) fn hessian(f: &dyn Fn(&Vec4) -> f64, u: &Vec4, h: f64) -> Option<Mat4> {
    let at = |di: usize, si: f64, dj: usize, sj: f64| {
        let mut v = *u;
        v[di] += si * h;
        v[dj] += sj * h;
        f(&v)
    };
    let f0 = f(u);
    let mut m = [[0.0; DIM]; DIM];
    for i in 0..DIM {
        // Moving the same coordinate twice by h/2 each is a step of h.
        let plus = at(i, 0.5, i, 0.5);
        let minus = at(i, -0.5, i, -0.5);
        m[i][i] = (plus - 2.0 * f0 + minus) / (h * h);
        for j in 0..i {
            let v = (at(i, 1.0, j, 1.0) - at(i, 1.0, j, -1.0) - at(i, -1.0, j, 1.0)
                + at(i, -1.0, j, -1.0))
                / (4.0 * h * h);
            m[i][j] = v;
            m[j][i] = v;
        }
    }
    m.iter().flatten().all(|v| v.is_finite()).then_some(m)
}

/// Lower-triangular `L` with `L·Lᵀ = m`, or `None` if `m` is not positive
/// definite (relative pivot threshold guards against near-singular input).
pub(crate) fn cholesky(m: &Mat4) -> Option<Mat4> {
    let scale = (0..DIM).map(|i| m[i][i].abs()).fold(0.0, f64::max);
    let mut l = [[0.0; DIM]; DIM];
    for i in 0..DIM {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let d = m[i][i] - s;
                if d.is_nan() || d <= 1e-12 * scale {
                    return None;
                }
                l[i][i] = d.sqrt();
            } else {
                l[i][j] = (m[i][j] - s) / l[j][j];
            }
        }
    }
    Some(l)
}

/// Inverse of a lower-triangular matrix with non-zero diagonal.
pub(crate) fn lower_inverse(l: &Mat4) -> Mat4 {
    let mut inv = [[0.0; DIM]; DIM];
    for col in 0..DIM {
        for i in col..DIM {
            let rhs = if i == col { 1.0 } else { 0.0 };
            let s: f64 = (col..i).map(|k| l[i][k] * inv[k][col]).sum();
            inv[i][col] = (rhs - s) / l[i][i];
        }
    }
    inv
}

/// Diagonal of `m⁻¹` for positive-definite `m`, via Cholesky:
/// `m⁻¹ = L⁻ᵀ L⁻¹`, so `(m⁻¹)ᵢᵢ = Σₖ (L⁻¹)ₖᵢ²`.
pub(crate) fn inverse_diagonal(m: &Mat4) -> Option<Vec4> {
    let li = lower_inverse(&cholesky(m)?);
    let mut d = [0.0; DIM];
    for (i, di) in d.iter_mut().enumerate() {
        *di = (0..DIM).map(|k| li[k][i] * li[k][i]).sum();
    }
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hessian_of_a_quadratic_and_its_inverse() {
        let a: Mat4 = [
            [4.0, 1.0, 0.5, 0.0],
            [1.0, 3.0, 0.2, 0.1],
            [0.5, 0.2, 2.0, 0.3],
            [0.0, 0.1, 0.3, 1.0],
        ];
        let f = |u: &Vec4| {
            let mut s = 0.0;
            for i in 0..DIM {
                for j in 0..DIM {
                    s += 0.5 * u[i] * a[i][j] * u[j];
                }
            }
            s
        };
        let h = hessian(&f, &[0.3, -0.2, 1.0, 2.0], 1e-3).unwrap();
        for i in 0..DIM {
            for j in 0..DIM {
                assert!((h[i][j] - a[i][j]).abs() < 1e-6, "{i},{j}: {}", h[i][j]);
            }
        }
        let l = cholesky(&a).unwrap();
        let li = lower_inverse(&l);
        // L⁻¹·L = I
        for i in 0..DIM {
            for j in 0..DIM {
                let v: f64 = (0..DIM).map(|k| li[i][k] * l[k][j]).sum();
                assert!((v - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
        let d = inverse_diagonal(&a).unwrap();
        // Check against A·A⁻¹ = I using the full inverse L⁻ᵀL⁻¹.
        let inv = |i: usize, j: usize| (0..DIM).map(|k| li[k][i] * li[k][j]).sum::<f64>();
        for i in 0..DIM {
            assert!((d[i] - inv(i, i)).abs() < 1e-14);
            let row: f64 = (0..DIM).map(|k| a[i][k] * inv(k, i)).sum();
            assert!((row - 1.0).abs() < 1e-12);
        }
        let mut neg = a;
        neg[3][3] = -1.0;
        assert!(cholesky(&neg).is_none());
    }
}
