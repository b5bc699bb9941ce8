//! The OpenCL programs the demo builds: small, but shaped like MACE's buffer kernels. Their
//! sources are the `.cl` files beside this one.

/// One OpenCL program the demo builds: MACE's program name, its source and its build options.
pub struct Kernel {
    /// The program name (MACE's key prefix).
    pub name: &'static str,
    /// The OpenCL C source, after [`COMMON`].
    pub source: &'static str,
    /// The build options, sorted as MACE sorts them.
    pub options: &'static str,
}

/// The definitions every demo kernel starts with, as MACE's `common.h` provides them.
pub const COMMON: &str = include_str!("kernels/common.cl");

/// The programs, in build order.
pub const KERNELS: &[Kernel] = &[
    Kernel {
        name: "conv_2d_1x1",
        options: "-DBIAS -DCMD_DATA_TYPE=f -DDATA_TYPE=float -DUSE_RELU -Dconv_2d_1x1=conv_2d_1x1",
        source: include_str!("kernels/conv_2d_1x1.cl"),
    },
    Kernel {
        name: "conv_2d_3x3",
        options: "-DBIAS -DCMD_DATA_TYPE=f -DDATA_TYPE=float -DUSE_RELUX -Dconv_2d_3x3=conv_2d_3x3",
        source: include_str!("kernels/conv_2d_3x3.cl"),
    },
    Kernel {
        name: "depthwise_conv2d",
        options: "-DBIAS -DCMD_DATA_TYPE=f -DDATA_TYPE=float -DUSE_RELU -Ddepthwise_conv2d=depthwise_conv2d",
        source: include_str!("kernels/depthwise_conv2d.cl"),
    },
    Kernel {
        name: "eltwise",
        options: "-DCMD_DATA_TYPE=f -DDATA_TYPE=float -DELTWISE_TYPE=0 -Deltwise=eltwise",
        source: include_str!("kernels/eltwise.cl"),
    },
    Kernel {
        name: "pooling",
        options: "-DCMD_DATA_TYPE=f -DDATA_TYPE=float -DPOOL_AVG -Dpooling=pooling",
        source: include_str!("kernels/pooling.cl"),
    },
    Kernel {
        name: "softmax",
        options: "-DCMD_DATA_TYPE=f -DDATA_TYPE=float -Dsoftmax=softmax",
        source: include_str!("kernels/softmax.cl"),
    },
    Kernel {
        name: "matmul",
        options: "-DCMD_DATA_TYPE=f -DDATA_TYPE=float -DTILE_SIZE=16 -Dmatmul=matmul",
        source: include_str!("kernels/matmul.cl"),
    },
    Kernel {
        name: "resize_bilinear",
        options: "-DCMD_DATA_TYPE=f -DDATA_TYPE=float -Dresize_bilinear_nocache=resize_bilinear_nocache",
        source: include_str!("kernels/resize_bilinear.cl"),
    },
];

/// The program whose cached binary the demo damages (by index into [`KERNELS`]).
pub const DAMAGED: usize = 3;

/// The source the demo builds for `k`.
pub fn source(k: &Kernel) -> String {
    format!("{COMMON}{}", k.source)
}
