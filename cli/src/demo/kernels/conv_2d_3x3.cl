
__kernel void conv_2d_3x3(__global const DATA_TYPE *input,   /* [in_channels, height, width] */
                          __global const DATA_TYPE *filter,  /* [out_channels, in_channels, 3, 3] */
#ifdef BIAS
                          __global const DATA_TYPE *bias,
#endif
                          __global DATA_TYPE *output,
                          const int in_channels,
                          const int in_height,
                          const int in_width,
                          const int out_height,
                          const int out_width,
                          const int stride,
                          const int padding,
                          const float relux_max_limit) {
  const int ow = get_global_id(0) << 2;
  const int oh = get_global_id(1);
  const int oc = get_global_id(2);
  if (ow >= out_width || oh >= out_height) return;
#ifdef BIAS
  DATA_TYPE4 acc = (DATA_TYPE4)bias[oc];
#else
  DATA_TYPE4 acc = 0;
#endif
  const int ih0 = oh * stride - padding;
  for (int ic = 0; ic < in_channels; ++ic) {
    __global const DATA_TYPE *in = input + ic * in_height * in_width;
    __global const DATA_TYPE *f = filter + (oc * in_channels + ic) * 9;
    for (int kh = 0; kh < 3; ++kh) {
      const int ih = ih0 + kh;
      if (ih < 0 || ih >= in_height) continue;
      for (int kw = 0; kw < 3; ++kw) {
        DATA_TYPE4 v;
        for (int i = 0; i < 4; ++i) {
          const int iw = (ow + i) * stride - padding + kw;
          ((DATA_TYPE *)&v)[i] = (iw < 0 || iw >= in_width) ? 0 : in[ih * in_width + iw];
        }
        acc = mad(v, (DATA_TYPE4)f[kh * 3 + kw], acc);
      }
    }
  }
  acc = do_activation(acc, relux_max_limit);
  __global DATA_TYPE *out = output + (oc * out_height + oh) * out_width + ow;
  if (ow + 3 < out_width) {
    vstore4(acc, 0, out);
  } else {
    for (int i = 0; ow + i < out_width; ++i) out[i] = ((DATA_TYPE *)&acc)[i];
  }
}
