//! Temporary stand-in until the BG/NBD module lands (types only).
use serde::{Deserialize, Serialize};
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    #[default]
    BgNbd,
    MbgNbd,
}
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Params {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}
pub fn p_alive(_f: Family, p: &Params, x: f64, t_x: f64, t: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let l = (p.a / (p.b + x - 1.0)).ln() + (p.r + x) * ((p.alpha + t).ln() - (p.alpha + t_x).ln());
    1.0 / (1.0 + l.exp())
}
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("no data")]
    NoData,
}
#[derive(Clone, Copy, Debug)]
pub struct Triple {
    pub x: f64,
    pub t_x: f64,
    pub t: f64,
}
pub struct TripleCounts(usize);
impl TripleCounts {
    pub fn customers(&self) -> usize {
        self.0
    }
}
impl FromIterator<Triple> for TripleCounts {
    fn from_iter<I: IntoIterator<Item = Triple>>(i: I) -> Self {
        TripleCounts(i.into_iter().count())
    }
}
pub struct FitOptions {
    pub initial: Params,
}
impl Default for FitOptions {
    fn default() -> Self {
        FitOptions { initial: Params { r: 1.0, alpha: 1.0, a: 1.0, b: 1.0 } }
    }
}
#[derive(Debug)]
pub struct FitResult {
    pub params: Params,
    pub log_likelihood: f64,
    pub customers: u64,
    pub distinct_triples: u64,
    pub iterations: u64,
    pub converged: bool,
}
pub fn fit_grouped(_f: Family, _c: &TripleCounts, _o: &FitOptions) -> Result<FitResult, ModelError> {
    Err(ModelError::NoData)
}
pub fn expected_activity(_f: Family, _p: &Params, _x: f64, _tx: f64, _t: f64, _h: f64) -> Result<f64, ModelError> {
    Err(ModelError::NoData)
}
