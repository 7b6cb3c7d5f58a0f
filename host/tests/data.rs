//! The IDX reader and datasets on the vendored MNIST and Fashion-MNIST files, and on broken copies.
use std::{io::Write, path::PathBuf};

use retort::data::{read_idx, Dataset, DatasetSpec, Split};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data").join(name)
}

#[test]
fn reads_real_mnist_and_fashion_mnist() {
    let labels = read_idx(&data("mnist/train-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!(labels.dims, vec![60000]);
    assert_eq!(&labels.data[..10], &[5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    let spec = DatasetSpec { name: "mnist".into(), dir: data("mnist"), validation: 5000, seed: 1 };
    let test = Dataset::load(&spec, Split::Test).unwrap();
    assert_eq!((test.len(), test.height, test.width, test.classes), (10000, 28, 28, 10));
    assert_eq!(&test.labels[..10], &[7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    let train = Dataset::load(&spec, Split::Train).unwrap();
    let val = Dataset::load(&spec, Split::Validation).unwrap();
    assert_eq!((train.len(), val.len()), (55000, 5000));
    let fashion = DatasetSpec { name: "fashion-mnist".into(), dir: data("fashion-mnist"), validation: 0, seed: 1 };
    let f = Dataset::load(&fashion, Split::Test).unwrap();
    assert_eq!((f.len(), f.classes), (10000, 10));
    assert_ne!(&f.labels[..10], &test.labels[..10]);
    let sub = train.subset(100, 3);
    assert_eq!(sub.len(), 100);
    assert_eq!(sub.images.len(), 100 * 784);
}

#[test]
fn truncated_and_corrupt_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(data("mnist/t10k-labels-idx1-ubyte.gz")).unwrap();
    // A truncated gzip stream.
    let p = dir.path().join("cut.gz");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = read_idx(&p).unwrap_err().to_string();
    assert!(e.contains("cut.gz") && e.contains("gzip"), "{e}");
    // A complete gzip stream of a truncated IDX file.
    let raw = {
        use std::io::Read;
        let mut v = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut v).unwrap();
        v
    };
    let p = dir.path().join("short-idx1-ubyte.gz");
    let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&p).unwrap(), flate2::Compression::fast());
    enc.write_all(&raw[..raw.len() - 10]).unwrap();
    enc.finish().unwrap();
    let e = read_idx(&p).unwrap_err().to_string();
    assert!(e.contains("truncated") && e.contains("10000") && e.contains("9990"), "{e}");
    // Raw (not gzipped) corrupt magic.
    let p = dir.path().join("bad-idx1-ubyte");
    let mut bad = raw.clone();
    bad[0] = 7;
    std::fs::write(&p, &bad).unwrap();
    assert!(read_idx(&p).unwrap_err().to_string().contains("magic"));
    // Raw and intact is fine.
    std::fs::write(&p, &raw).unwrap();
    assert_eq!(read_idx(&p).unwrap().dims, vec![10000]);
    // Images and labels that disagree on the count.
    let d = dir.path().join("mismatch");
    std::fs::create_dir(&d).unwrap();
    std::fs::copy(data("mnist/t10k-images-idx3-ubyte.gz"), d.join("t10k-images-idx3-ubyte.gz")).unwrap();
    std::fs::copy(data("mnist/train-labels-idx1-ubyte.gz"), d.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let spec = DatasetSpec { name: "mnist".into(), dir: d, validation: 0, seed: 0 };
    let e = Dataset::load(&spec, Split::Test).unwrap_err().to_string();
    assert!(e.contains("10000 images but 60000 labels"), "{e}");
}
